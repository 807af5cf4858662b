//! The kernel's record of written pages: userfaultfd write protection in asynchronous
//! mode and the `PAGEMAP_SCAN` ioctl (Linux 6.7 and later; what CRIU uses).
//!
//! A range registered with `UFFDIO_REGISTER_MODE_WP` on a userfaultfd that enabled
//! `UFFD_FEATURE_WP_ASYNC` is write-protected page by page; a write to a protected page
//! (from wasm, the host, or the kernel itself, say a `read` into it) is resolved by the
//! kernel on the spot: the page is unprotected and the write goes on. No handler thread,
//! no message, no signal. `UFFD_FEATURE_WP_UNPOPULATED` extends protection to pages never
//! touched yet, which a first write must also mark. `PAGEMAP_SCAN` on /proc/self/pagemap
//! then lists the unprotected (written) pages of a range and, with
//! `PM_SCAN_WP_MATCHING`, protects them again in the same walk.
//!
//! One userfaultfd serves the whole process (registrations are per address range; one
//! descriptor per instance would run into file-descriptor limits). It is opened with
//! `UFFD_USER_MODE_ONLY`, which needs no privilege even when
//! `vm.unprivileged_userfaultfd` is 0, and has no effect here: asynchronous protection
//! never delivers faults, from user or kernel mode. The headers of older distributions
//! lack `PAGEMAP_SCAN`, so the structures are spelled out here (the unit tests check
//! them against the values linux/fs.h and linux/userfaultfd.h give).

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

use crate::snapshot::digest::PAGE;

const UFFD_API: u64 = 0xAA;
const UFFD_USER_MODE_ONLY: libc::c_int = 1;
const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;
const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;
const PAGE_IS_WRITTEN: u64 = 1 << 1;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

#[repr(C)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `_IOWR(ty, nr, size)`.
const fn iowr(ty: u8, nr: u8, size: usize) -> u64 {
    (3 << 30) | ((size as u64) << 16) | ((ty as u64) << 8) | nr as u64
}

const UFFDIO_API: u64 = iowr(0xAA, 0x3F, size_of::<UffdioApi>());
const UFFDIO_REGISTER: u64 = iowr(0xAA, 0x00, size_of::<UffdioRegister>());
const UFFDIO_WRITEPROTECT: u64 = iowr(0xAA, 0x06, size_of::<UffdioWriteprotect>());
const PAGEMAP_SCAN: u64 = iowr(b'f', 16, size_of::<PmScanArg>());

/// Regions read per `PAGEMAP_SCAN` call; a scan of many scattered pages takes several.
const REGIONS_PER_SCAN: usize = 512;

/// The process's userfaultfd and pagemap.
pub struct Kernel {
    uffd: OwnedFd,
    pagemap: File,
}

/// The kernel's write tracking, or None when this kernel (or a seccomp filter) refuses
/// any part of it; tried once per process.
pub fn kernel() -> Option<&'static Kernel> {
    static KERNEL: OnceLock<Option<Kernel>> = OnceLock::new();
    KERNEL.get_or_init(|| Kernel::open().ok()).as_ref()
}

fn ioctl<T>(fd: &impl AsRawFd, request: u64, arg: &mut T) -> io::Result<libc::c_int> {
    // SAFETY: `arg` is the structure `request` reads and writes, sized as its number says.
    let result = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg as *mut T) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

fn range_arg(range: &Range<usize>) -> UffdioRange {
    UffdioRange {
        start: range.start as u64,
        len: (range.end - range.start) as u64,
    }
}

impl Kernel {
    fn open() -> io::Result<Kernel> {
        // SAFETY: userfaultfd(2) takes flags and returns a new descriptor or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_userfaultfd,
                libc::O_CLOEXEC | libc::O_NONBLOCK | UFFD_USER_MODE_ONLY,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor just opened, owned from here on.
        let uffd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
        let wanted = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
        let mut api = UffdioApi {
            api: UFFD_API,
            features: wanted,
            ioctls: 0,
        };
        ioctl(&uffd, UFFDIO_API, &mut api)?;
        if api.features & wanted != wanted {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "no asynchronous write protection",
            ));
        }
        let kernel = Kernel {
            uffd,
            pagemap: File::open("/proc/self/pagemap")?,
        };
        kernel.probe()?;
        Ok(kernel)
    }

    /// Checks on a scratch mapping that a written page is reported, and only it: a kernel
    /// that accepts the calls but answers otherwise is not trusted with snapshots.
    fn probe(&self) -> io::Result<()> {
        let scratch = Mapping::new(4 * PAGE)?;
        let range = scratch.range();
        self.register(range.clone())?;
        self.write_protect(range.clone())?;
        let page = range.start + 2 * PAGE;
        // SAFETY: a byte of the scratch mapping, which is readable and writable.
        unsafe { std::ptr::write_volatile(page as *mut u8, 1) };
        let mut written = Vec::new();
        self.take_written(range, &mut written)?;
        if written.len() != 1 || written[0] != (page..page + PAGE) {
            return Err(io::Error::other(
                "PAGEMAP_SCAN reported other pages than the one written",
            ));
        }
        Ok(())
    }

    /// Puts `range` (page-aligned, mapped, private anonymous memory) under write tracking;
    /// its pages read as written until protected. Registering a range again is harmless.
    pub fn register(&self, range: Range<usize>) -> io::Result<()> {
        let mut register = UffdioRegister {
            range: range_arg(&range),
            mode: UFFDIO_REGISTER_MODE_WP,
            ioctls: 0,
        };
        ioctl(&self.uffd, UFFDIO_REGISTER, &mut register).map(drop)
    }

    /// Protects every page of `range` (registered): none reads as written until written.
    pub fn write_protect(&self, range: Range<usize>) -> io::Result<()> {
        self.set_protection(range, UFFDIO_WRITEPROTECT_MODE_WP)
    }

    /// Lifts the protection of `range` (registered), so that writing all of it does not
    /// fault page by page; every page then reads as written.
    pub fn unprotect(&self, range: Range<usize>) -> io::Result<()> {
        self.set_protection(range, 0)
    }

    fn set_protection(&self, range: Range<usize>, mode: u64) -> io::Result<()> {
        let mut protect = UffdioWriteprotect {
            range: range_arg(&range),
            mode,
        };
        ioctl(&self.uffd, UFFDIO_WRITEPROTECT, &mut protect).map(drop)
    }

    /// Appends the address ranges of the pages of `range` (registered) written since they
    /// were protected, ascending, and protects them again. Fails, reporting nothing
    /// reliable, if part of `range` is not under asynchronous write tracking.
    pub fn take_written(&self, range: Range<usize>, out: &mut Vec<Range<usize>>) -> io::Result<()> {
        let mut regions = [PageRegion::default(); REGIONS_PER_SCAN];
        let mut start = range.start as u64;
        while start < range.end as u64 {
            let mut arg = PmScanArg {
                size: size_of::<PmScanArg>() as u64,
                flags: PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
                start,
                end: range.end as u64,
                walk_end: 0,
                vec: regions.as_mut_ptr() as u64,
                vec_len: REGIONS_PER_SCAN as u64,
                max_pages: 0,
                category_inverted: 0,
                category_mask: PAGE_IS_WRITTEN,
                category_anyof_mask: 0,
                return_mask: PAGE_IS_WRITTEN,
            };
            let found = ioctl(&self.pagemap, PAGEMAP_SCAN, &mut arg)? as usize;
            for region in &regions[..found.min(REGIONS_PER_SCAN)] {
                let (a, b) = (region.start as usize, region.end as usize);
                match out.last_mut() {
                    Some(last) if last.end == a => last.end = b,
                    _ => out.push(a..b),
                }
            }
            if arg.walk_end <= start {
                return Err(io::Error::other("PAGEMAP_SCAN made no progress"));
            }
            start = arg.walk_end;
        }
        Ok(())
    }
}

/// A private anonymous mapping, unmapped when dropped.
pub struct Mapping {
    address: usize,
    len: usize,
}

impl Mapping {
    pub fn new(len: usize) -> io::Result<Mapping> {
        Mapping::with_protection(len, libc::PROT_READ | libc::PROT_WRITE)
    }

    /// A mapping of `len` bytes with protection `prot` (PROT_NONE reserves address space).
    pub fn with_protection(len: usize, prot: libc::c_int) -> io::Result<Mapping> {
        // SAFETY: a new private anonymous mapping; nothing else refers to it.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            address: address as usize,
            len,
        })
    }

    pub fn range(&self) -> Range<usize> {
        self.address..self.address + self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping this mapping, which nothing uses any more.
        unsafe { libc::munmap(self.address as *mut libc::c_void, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers the uapi headers give (linux/userfaultfd.h; linux/fs.h from 6.7).
    #[test]
    fn structures_match_the_kernel_abi() {
        assert_eq!(
            (
                size_of::<UffdioApi>(),
                size_of::<UffdioRegister>(),
                size_of::<UffdioWriteprotect>()
            ),
            (24, 32, 24)
        );
        assert_eq!((size_of::<PmScanArg>(), size_of::<PageRegion>()), (96, 24));
        assert_eq!(UFFDIO_API, 0xc018_aa3f);
        assert_eq!(UFFDIO_REGISTER, 0xc020_aa00);
        assert_eq!(UFFDIO_WRITEPROTECT, 0xc018_aa06);
        assert_eq!(PAGEMAP_SCAN, 0xc060_6610);
    }

    fn write(address: usize, value: u8) {
        // SAFETY: the tests write only into their own read-write mappings.
        unsafe { std::ptr::write_volatile(address as *mut u8, value) };
    }

    fn read(address: usize) -> u8 {
        // SAFETY: as in `write`.
        unsafe { std::ptr::read_volatile(address as *const u8) }
    }

    /// The ranges as (first, end) page numbers from `base`.
    fn pages(base: usize, ranges: &[Range<usize>]) -> Vec<(usize, usize)> {
        ranges
            .iter()
            .map(|r| ((r.start - base) / PAGE, (r.end - base) / PAGE))
            .collect()
    }

    /// Writes by this thread and by the kernel are reported, reads are not, and each scan
    /// protects again what it reported.
    #[test]
    fn written_pages_are_reported_once() {
        let Some(kernel) = kernel() else {
            eprintln!("userfaultfd write tracking unavailable here: kernel path not tested");
            return;
        };
        let mapping = Mapping::new(64 * PAGE).unwrap();
        let range = mapping.range();
        let base = range.start;
        write(base + 5 * PAGE, 1); // populated before tracking starts
        kernel.register(range.clone()).unwrap();
        let mut written = Vec::new();
        kernel.take_written(range.clone(), &mut written).unwrap();
        assert_eq!(
            pages(base, &written),
            [(0, 64)],
            "unprotected pages read as written"
        );
        kernel.write_protect(range.clone()).unwrap();
        for page in [3, 4, 5, 40] {
            write(base + page * PAGE + 17, 2);
        }
        assert_eq!(read(base + 9 * PAGE), 0);
        let mut pipe = [0; 2];
        // SAFETY: a pipe, written then read into page 11 of the mapping by the kernel.
        unsafe {
            assert_eq!(libc::pipe(pipe.as_mut_ptr()), 0);
            assert_eq!(
                libc::write(pipe[1], b"hello".as_ptr() as *const libc::c_void, 5),
                5
            );
            assert_eq!(
                libc::read(pipe[0], (base + 11 * PAGE + 100) as *mut libc::c_void, 5),
                5
            );
            libc::close(pipe[0]);
            libc::close(pipe[1]);
        }
        let mut written = Vec::new();
        kernel.take_written(range.clone(), &mut written).unwrap();
        assert_eq!(pages(base, &written), [(3, 6), (11, 12), (40, 41)]);
        written.clear();
        kernel.take_written(range.clone(), &mut written).unwrap();
        assert!(written.is_empty());
        kernel.unprotect(base..base + 2 * PAGE).unwrap();
        kernel.take_written(range, &mut written).unwrap();
        assert_eq!(pages(base, &written), [(0, 2)]);
    }

    /// More scattered pages than one scan call returns, and memory that grows the way
    /// wasmer grows it (mprotect of reserved address space), registered as it grows.
    #[test]
    fn many_pages_and_growth() {
        let Some(kernel) = kernel() else { return };
        let reserved = Mapping::with_protection(4096 * PAGE, libc::PROT_NONE).unwrap();
        let base = reserved.range().start;
        let grow = |pages: usize| {
            // SAFETY: making the start of the reservation accessible, as memory.grow does.
            assert_eq!(
                unsafe {
                    libc::mprotect(
                        base as *mut libc::c_void,
                        pages * PAGE,
                        libc::PROT_READ | libc::PROT_WRITE,
                    )
                },
                0
            );
        };
        grow(2048);
        kernel.register(base..base + 2048 * PAGE).unwrap();
        kernel.write_protect(base..base + 2048 * PAGE).unwrap();
        let scattered: Vec<usize> = (0..2048).step_by(3).collect();
        for page in &scattered {
            write(base + page * PAGE, 1);
        }
        grow(4096);
        write(base + 3000 * PAGE, 1);
        let mut written = Vec::new();
        kernel
            .take_written(base..base + 2048 * PAGE, &mut written)
            .unwrap();
        assert_eq!(
            pages(base, &written),
            scattered.iter().map(|p| (*p, p + 1)).collect::<Vec<_>>()
        );
        // The grown part is not registered yet: a scan that covers it fails, not lies.
        assert!(kernel
            .take_written(base..base + 4096 * PAGE, &mut Vec::new())
            .is_err());
        kernel.register(base..base + 4096 * PAGE).unwrap();
        kernel
            .write_protect(base + 2048 * PAGE..base + 4096 * PAGE)
            .unwrap();
        write(base + 4000 * PAGE, 1);
        written.clear();
        kernel
            .take_written(base..base + 4096 * PAGE, &mut written)
            .unwrap();
        assert_eq!(pages(base, &written), [(4000, 4001)]);
    }
}
