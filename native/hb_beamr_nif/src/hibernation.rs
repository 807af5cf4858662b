//! Hibernation of an instance: who holds its state while it has no executor, and the
//! hand-offs between the executor that goes and the request that wakes it.
//!
//! An instance is *live* (an executor thread holds its Store), *hibernated* (its state is
//! an image, `beamr_core::state::hibernate::Image`, in memory or in a file), *reviving* (a new
//! executor is putting the image back) or *gone* (stopped while hibernated).
//!
//! The hand-offs race requests: an executor that decides to hibernate must not leave a
//! request in its mailbox with nobody to serve it. Each side writes its decision, fences,
//! then reads the other's: the executor stores `HIBERNATED` and then looks at the mailbox
//! (`Mailbox::is_empty`); a NIF pushes its command and then looks at the state. With both
//! fences sequentially consistent at least one sees the other: either the executor sees
//! the command and takes its image back, or the NIF sees `HIBERNATED` and starts a
//! revival (claiming it with a compare-and-swap, so exactly one request does). Both may
//! see each other; the compare-and-swap then decides.

use std::path::PathBuf;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use beamr_core::handoff::Mailbox;
use beamr_core::state::base::Base;
use beamr_core::state::hibernate::Image;
use once_cell::sync::Lazy;
use parking_lot::Mutex;

const LIVE: u8 = 0;
const HIBERNATED: u8 = 1;
const REVIVING: u8 = 2;
const GONE: u8 = 3;

/// Where a hibernated instance's image is.
pub enum Stored {
    Memory(Image),
    /// In a file of `hibernate_dir`; its base stays in memory (bases are shared).
    Disk {
        path: PathBuf,
        base: Arc<Base>,
        bytes: u64,
    },
}

impl Stored {
    fn account(&self, sign: i64) {
        let (counter, bytes) = match self {
            Stored::Memory(image) => (&STATS.memory_bytes, image.bytes() as u64),
            Stored::Disk { bytes, .. } => (&STATS.disk_bytes, *bytes),
        };
        if sign > 0 {
            counter.fetch_add(bytes, Ordering::Relaxed);
        } else {
            counter.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Frees the image (a file is removed).
    pub fn discard(self) {
        if let Stored::Disk { path, .. } = &self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What a request must do after queueing its command (see the module doc).
pub enum Wake {
    /// An executor is there, or coming.
    Nothing,
    /// The instance hibernates and this request revives it, with this image.
    Revive(Stored),
    /// The instance was stopped while hibernated: whatever is queued must be answered by
    /// the request itself.
    Gone,
}

/// An instance's hibernation state.
pub struct Hibernation {
    life: AtomicU8,
    stored: Mutex<Option<Stored>>,
    /// Idle this long, the instance hibernates by itself (start option `hibernate_after`).
    pub after: Option<Duration>,
    pub hibernations: AtomicU64,
    pub revivals: AtomicU64,
    /// When the instance last served a request, in milliseconds since the VM loaded the
    /// library (for `max_live`'s choice of the least recently used).
    last_active: AtomicU64,
    /// `max_live` asked it to hibernate and its executor has not seen the request yet.
    requested: AtomicBool,
    /// Where its image goes (start option or application env `hibernate_dir`); in memory
    /// without.
    pub dir: Option<PathBuf>,
}

impl Hibernation {
    pub fn new(after: Option<Duration>, dir: Option<PathBuf>) -> Hibernation {
        Hibernation {
            requested: AtomicBool::new(false),
            dir,
            life: AtomicU8::new(LIVE),
            stored: Mutex::new(None),
            after,
            hibernations: AtomicU64::new(0),
            revivals: AtomicU64::new(0),
            last_active: AtomicU64::new(now_ms()),
        }
    }

    pub fn is_hibernated(&self) -> bool {
        self.life.load(Ordering::Acquire) == HIBERNATED
    }

    pub fn is_live(&self) -> bool {
        self.life.load(Ordering::Acquire) == LIVE
    }

    /// Marks a `max_live` request to hibernate: false when one is still pending.
    pub fn request(&self) -> bool {
        !self.requested.swap(true, Ordering::AcqRel)
    }

    /// The executor saw the request.
    pub fn requested_seen(&self) {
        self.requested.store(false, Ordering::Release);
    }

    pub fn touch(&self) {
        self.last_active.store(now_ms(), Ordering::Relaxed);
    }

    pub fn last_active(&self) -> u64 {
        self.last_active.load(Ordering::Relaxed)
    }

    /// Executor side, from live or reviving: hands `stored` over and leaves. `Err` gives it
    /// back when a request came meanwhile; the executor then goes on serving.
    pub fn park<T>(&self, stored: Stored, mailbox: &Mailbox<T>) -> Result<(), Stored> {
        let from = self.life.load(Ordering::Acquire);
        stored.account(1);
        *self.stored.lock() = Some(stored);
        self.life.store(HIBERNATED, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !mailbox.is_empty()
            && self
                .life
                .compare_exchange(HIBERNATED, from, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            let stored = self.stored.lock().take().expect("parked just now");
            stored.account(-1);
            return Err(stored);
        }
        STATS.hibernated.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Request side, right after queueing a command.
    pub fn after_push(&self) -> Wake {
        fence(Ordering::SeqCst);
        match self.life.load(Ordering::SeqCst) {
            HIBERNATED
                if self
                    .life
                    .compare_exchange(HIBERNATED, REVIVING, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok() =>
            {
                let stored = self.stored.lock().take().expect("a hibernated image");
                stored.account(-1);
                STATS.hibernated.fetch_sub(1, Ordering::Relaxed);
                Wake::Revive(stored)
            }
            GONE => Wake::Gone,
            _ => Wake::Nothing,
        }
    }

    /// A revival failed (from reviving; the caller alone may pop the mailbox): answers
    /// what is queued with `refuse` and hibernates again with `stored`, until nothing is
    /// queued; or frees the image when the instance was stopped meanwhile (false: the
    /// caller then ends it).
    pub fn give_back<T>(
        &self,
        mut stored: Stored,
        mailbox: &Mailbox<T>,
        stopped: impl Fn() -> bool,
        mut refuse: impl FnMut(T),
    ) -> bool {
        STATS.failed_revivals.fetch_add(1, Ordering::Relaxed);
        loop {
            while let Some(queued) = mailbox.try_pop() {
                refuse(queued);
            }
            // A stop pushes its command before it looks for an image to free: either it
            // was popped above, with the flag already set, or `park` sees it queued.
            if stopped() {
                stored.discard();
                return false;
            }
            match self.park(stored, mailbox) {
                Ok(()) => return true,
                Err(back) => stored = back,
            }
        }
    }

    /// The revival succeeded: the instance is live again.
    pub fn revived(&self) {
        self.revivals.fetch_add(1, Ordering::Relaxed);
        STATS.revivals.fetch_add(1, Ordering::Relaxed);
        self.life.store(LIVE, Ordering::Release);
    }

    /// Stop: the image of a hibernated instance, which is now gone.
    pub fn end(&self) -> Option<Stored> {
        self.life
            .compare_exchange(HIBERNATED, GONE, Ordering::SeqCst, Ordering::SeqCst)
            .ok()?;
        let stored = self.stored.lock().take()?;
        stored.account(-1);
        STATS.hibernated.fetch_sub(1, Ordering::Relaxed);
        Some(stored)
    }

    /// Bytes of the image (0 when live).
    pub fn image_bytes(&self) -> u64 {
        match &*self.stored.lock() {
            Some(Stored::Memory(image)) => image.bytes() as u64,
            Some(Stored::Disk { bytes, .. }) => *bytes,
            None => 0,
        }
    }
}

fn now_ms() -> u64 {
    static EPOCH: Lazy<Instant> = Lazy::new(Instant::now);
    EPOCH.elapsed().as_millis() as u64
}

/// Node-wide counts for `hb_beamr:stats/0`.
pub struct Stats {
    pub hibernated: AtomicUsize,
    pub memory_bytes: AtomicU64,
    pub disk_bytes: AtomicU64,
    pub hibernations: AtomicU64,
    pub revivals: AtomicU64,
    /// Hibernations that could not be made (the instance stayed live), by reason.
    pub failed_no_memory: AtomicU64,
    pub failed_disk: AtomicU64,
    pub failed_state: AtomicU64,
    /// Revivals the OS refused (the instance stayed hibernated).
    pub failed_revivals: AtomicU64,
}

pub static STATS: Stats = Stats {
    hibernated: AtomicUsize::new(0),
    memory_bytes: AtomicU64::new(0),
    disk_bytes: AtomicU64::new(0),
    hibernations: AtomicU64::new(0),
    revivals: AtomicU64::new(0),
    failed_no_memory: AtomicU64::new(0),
    failed_disk: AtomicU64::new(0),
    failed_state: AtomicU64::new(0),
    failed_revivals: AtomicU64::new(0),
};

/// Node-wide settings (application env, passed with each start).
pub struct Settings {
    /// Live instances beyond this hibernate, least recently used first (0: no limit).
    pub max_live: AtomicUsize,
}

pub static SETTINGS: Settings = Settings {
    max_live: AtomicUsize::new(0),
};
