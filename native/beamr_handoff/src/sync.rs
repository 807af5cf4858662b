//! What the protocols synchronise with: std's atomics, cell and threads and
//! parking_lot's mutex, or, when built with `RUSTFLAGS="--cfg loom"`, loom's versions of
//! them, so the models in tests/loom.rs can explore every interleaving. The ordinary
//! build compiles to exactly what it used directly before this shim.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) mod thread {
    pub(crate) use std::thread::{current, park, park_timeout, yield_now, Thread};
}

/// std's park and unpark (a token per thread) over loom's mutex and condition variable.
/// loom's own `Thread::unpark` wakes its target whatever it is blocked on: a consumer
/// woken while it waits for the queue's lock or in `join` trips loom's internal
/// assertions (tokio-rs/loom#249). A condition variable only wakes its waiters.
#[cfg(loom)]
pub(crate) mod thread {
    use loom::sync::{Arc, Condvar, Mutex};

    struct Parker {
        token: Mutex<bool>,
        unparked: Condvar,
    }

    #[derive(Clone)]
    pub(crate) struct Thread(Arc<Parker>);

    loom::thread_local! {
        static PARKER: Arc<Parker> = Arc::new(Parker {
            token: Mutex::new(false),
            unparked: Condvar::new(),
        });
    }

    pub(crate) fn current() -> Thread {
        PARKER.with(|parker| Thread(Arc::clone(parker)))
    }

    /// Returns at once if the token is there (taking it), else waits for it.
    pub(crate) fn park() {
        PARKER.with(|parker| {
            let mut token = parker.token.lock().unwrap();
            while !*token {
                token = parker.unparked.wait(token).unwrap();
            }
            *token = false;
        })
    }

    /// A timed park modelled as one that may end at any moment (a spurious wake-up), which
    /// covers every timing the real one can show.
    pub(crate) fn park_timeout(_timeout: std::time::Duration) {}

    impl Thread {
        /// Makes the token available.
        pub(crate) fn unpark(&self) {
            *self.0.token.lock().unwrap() = true;
            self.0.unparked.notify_one();
        }
    }
}

/// `std::cell::UnsafeCell` behind loom's closure API (`with_mut`), which lets loom check
/// that no two threads touch the cell at once.
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(
    #[cfg(not(loom))] std::cell::UnsafeCell<T>,
    #[cfg(loom)] loom::cell::UnsafeCell<T>,
);

impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> UnsafeCell<T> {
        #[cfg(not(loom))]
        return UnsafeCell(std::cell::UnsafeCell::new(value));
        #[cfg(loom)]
        return UnsafeCell(loom::cell::UnsafeCell::new(value));
    }

    /// Calls `f` with a pointer to the contents.
    ///
    /// # Safety
    /// The caller must have exclusive access to the contents for the duration of `f`.
    #[inline(always)]
    pub(crate) unsafe fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(not(loom))]
        return f(self.0.get());
        #[cfg(loom)]
        return self.0.with_mut(f);
    }
}

#[cfg(not(loom))]
pub(crate) use parking_lot::Mutex;

/// loom's mutex with parking_lot's `lock` (no poisoning).
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

#[cfg(loom)]
impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Mutex<T> {
        Mutex(loom::sync::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
        self.0.lock().unwrap()
    }
}
