use super::*;

/// Memory that grows in place as wasmer's does: reserved address space whose start is
/// made accessible.
struct Memory {
    reserved: Mapping,
    pages: usize,
}

impl Memory {
    fn new(pages: usize) -> Memory {
        let mut memory = Memory {
            reserved: Mapping::with_protection(1024 * PAGE, libc::PROT_NONE).unwrap(),
            pages: 0,
        };
        memory.grow(pages);
        memory
    }

    fn base(&self) -> usize {
        self.reserved.range().start
    }

    fn grow(&mut self, pages: usize) {
        // SAFETY: making the start of this reservation accessible.
        let made = unsafe {
            libc::mprotect(
                self.base() as *mut libc::c_void,
                pages * PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        assert_eq!(made, 0);
        self.pages = pages;
    }

    fn bytes(&self) -> &'static [u8] {
        bytes(self.base()..self.base() + self.pages * PAGE)
    }

    fn write(&self, page: usize, value: u8) {
        assert!(page < self.pages);
        // SAFETY: a byte of the accessible part of this reservation.
        unsafe { std::ptr::write_volatile((self.base() + page * PAGE + 99) as *mut u8, value) };
    }

    fn digests(&self) -> Vec<u64> {
        page_digests(self.bytes())
    }
}

fn run(first: u32, count: u32) -> PageRun {
    PageRun { first, count }
}

/// What an engaged tracker uses with `policy` here.
fn engaged_mode(policy: Policy) -> Mode {
    if policy == Policy::Auto && kernel_tracking_available() {
        Mode::Kernel
    } else {
        Mode::Digests
    }
}

const POLICIES: [Policy; 2] = [Policy::Auto, Policy::Digests];

#[test]
fn without_a_base_there_are_no_changes() {
    let memory = Memory::new(16);
    let mut pages = DirtyPages::new(Policy::Auto);
    assert_eq!(pages.mode(), Mode::NoBase);
    assert_eq!(pages.take_changes(memory.bytes()), None);
}

#[test]
fn changes_are_the_pages_written_since_the_base_and_growth() {
    for policy in POLICIES {
        let mut memory = Memory::new(64);
        memory.write(5, 1);
        let mut pages = DirtyPages::new(policy);
        pages.snapshotted(memory.bytes(), memory.digests(), true);
        assert_eq!(pages.mode(), engaged_mode(policy));
        for page in [3, 4, 40, 63] {
            memory.write(page, 7);
        }
        assert_eq!(
            pages.take_changes(memory.bytes()),
            Some(vec![run(3, 2), run(40, 1), run(63, 1)]),
            "{policy:?}"
        );
        assert_eq!(
            pages.take_changes(memory.bytes()),
            Some(vec![]),
            "{policy:?}"
        );
        memory.grow(80);
        memory.write(10, 2);
        memory.write(70, 2);
        assert_eq!(
            pages.take_changes(memory.bytes()),
            Some(vec![run(10, 1), run(64, 16)]),
            "{policy:?}"
        );
        memory.write(70, 3);
        memory.write(79, 3);
        assert_eq!(
            pages.take_changes(memory.bytes()),
            Some(vec![run(70, 1), run(79, 1)]),
            "{policy:?}"
        );
        assert_eq!(pages.mode(), engaged_mode(policy));
    }
}

/// A full snapshot that was not asked for incrementally keeps digests; the first delta
/// compares them, then engages the kernel.
#[test]
fn plain_full_snapshots_do_not_engage_the_kernel() {
    let memory = Memory::new(32);
    let mut pages = DirtyPages::new(Policy::Auto);
    pages.snapshotted(memory.bytes(), memory.digests(), false);
    assert_eq!(pages.mode(), Mode::Digests);
    memory.write(9, 1);
    assert_eq!(pages.take_changes(memory.bytes()), Some(vec![run(9, 1)]));
    assert_eq!(pages.mode(), engaged_mode(Policy::Auto));
    // Once engaged, full snapshots keep it so and make the base.
    memory.write(12, 1);
    pages.snapshotted(memory.bytes(), memory.digests(), false);
    assert_eq!(pages.mode(), engaged_mode(Policy::Auto));
    memory.write(13, 1);
    assert_eq!(pages.take_changes(memory.bytes()), Some(vec![run(13, 1)]));
}

/// A restore overwrites all of memory: it is the base then, whatever it wrote.
#[test]
fn restored_memory_is_the_base() {
    for policy in POLICIES {
        let memory = Memory::new(32);
        let mut pages = DirtyPages::new(policy);
        pages.snapshotted(memory.bytes(), memory.digests(), true);
        pages.release(memory.bytes());
        assert_eq!(pages.mode(), Mode::NoBase);
        for page in 0..32 {
            memory.write(page, page as u8 + 1);
        }
        pages.restored(memory.bytes(), Some(memory.digests()));
        assert_eq!(pages.mode(), Mode::Digests);
        memory.write(31, 0);
        assert_eq!(
            pages.take_changes(memory.bytes()),
            Some(vec![run(31, 1)]),
            "{policy:?}"
        );
        pages.release(memory.bytes());
        memory.write(2, 0);
        pages.restored(memory.bytes(), None);
        assert_eq!(
            pages.take_changes(memory.bytes()),
            Some(vec![]),
            "{policy:?}"
        );
    }
}

/// Digests see contents; the kernel sees writes. Either way nothing is missed.
#[test]
fn rewriting_the_same_bytes_counts_only_for_the_kernel() {
    for policy in POLICIES {
        let memory = Memory::new(16);
        memory.write(4, 5);
        let mut pages = DirtyPages::new(policy);
        pages.snapshotted(memory.bytes(), memory.digests(), true);
        memory.write(4, 5);
        let expected = if engaged_mode(policy) == Mode::Kernel {
            vec![run(4, 1)]
        } else {
            vec![]
        };
        assert_eq!(
            pages.take_changes(memory.bytes()),
            Some(expected),
            "{policy:?}"
        );
    }
}

/// Memory that moved (another address) cannot be compared page by page by the kernel:
/// every page counts as changed, once.
#[test]
fn memory_that_moved_counts_as_changed() {
    let first = Memory::new(16);
    let second = Memory::new(16);
    let mut pages = DirtyPages::new(Policy::Auto);
    pages.snapshotted(first.bytes(), first.digests(), true);
    let expected = if kernel_tracking_available() {
        vec![run(0, 16)]
    } else {
        vec![]
    };
    assert_eq!(pages.take_changes(second.bytes()), Some(expected));
    second.write(3, 1);
    assert_eq!(pages.take_changes(second.bytes()), Some(vec![run(3, 1)]));
}

#[test]
fn runs_merge_consecutive_pages() {
    assert_eq!(
        runs([1, 2, 3, 7, 9, 10].into_iter()),
        vec![run(1, 3), run(7, 1), run(9, 2)]
    );
    assert_eq!(runs(std::iter::empty()), vec![]);
}

/// Memory whose pages are a base's memory file mapped copy-on-write (see
/// `state::memory_file`): the kernel's tracking engages on it like on anonymous memory,
/// and a first write to a page of the file, which copies it, counts as a change.
#[test]
fn writes_to_a_mapped_memory_file_are_changes() {
    use crate::state::memory_file::MemoryFile;
    use crate::state::zero_pages::ZeroPages;
    let base: Vec<u8> = (0..8 * PAGE).map(|i| (i / PAGE) as u8).collect();
    let file = MemoryFile::new(&base, &ZeroPages::of(&base)).unwrap();
    for policy in POLICIES {
        let mut memory = Memory::new(12);
        // SAFETY: the start of this reservation, accessible and ours.
        let bytes = unsafe { std::slice::from_raw_parts_mut(memory.base() as *mut u8, 12 * PAGE) };
        unsafe { file.map_over(bytes) }.unwrap();
        let mut pages = DirtyPages::new(policy);
        pages.snapshotted(memory.bytes(), memory.digests(), true);
        assert_eq!(pages.mode(), engaged_mode(policy), "{policy:?}");
        memory.write(3, 200);
        memory.write(10, 201);
        assert_eq!(
            pages.take_changes(memory.bytes()),
            Some(vec![run(3, 1), run(10, 1)]),
            "{policy:?}"
        );
        memory.grow(14);
        memory.write(5, 202);
        memory.write(13, 203);
        assert_eq!(
            pages.take_changes(memory.bytes()),
            Some(vec![run(5, 1), run(12, 2)]),
            "{policy:?}"
        );
        assert_eq!(memory.bytes()[3 * PAGE + 99], 200);
        assert_eq!(memory.bytes()[4 * PAGE], 4);
    }
}
