# Resident bytes of all wasm memories in /proc/PID/smaps (read from stdin or the file
# named), for `make bench-scale`: a wasm memory is a read-write mapping followed right
# after by the inaccessible rest of its reservation (4 GiB or more). Run outside the VM
# it measures, so that parsing 80 MB of smaps leaves nothing in that VM's allocators.
use strict;
use warnings;
no warnings qw(portable);  # addresses are 48-bit; perl here is 64-bit

my ($sum, $rss, $prev_end, $prev_perms) = (0, 0, -1, '');
while (<>) {
    if (/^([0-9a-f]+)-([0-9a-f]+) (\S+) /) {
        my ($start, $end, $perms) = (hex $1, hex $2, $3);
        $sum += $rss
          if $prev_perms eq 'rw-p' && $perms eq '---p' && $start == $prev_end && $end - $start >= 2**32;
        ($prev_end, $prev_perms, $rss) = ($end, $perms, 0);
    } elsif (/^Rss:\s+(\d+) kB/) {
        $rss = $1 * 1024;
    }
}
print "$sum\n";
