//! The `max_live` budget: a thread that, when more instances are live than the
//! application env's `max_live` allows, asks the least recently used idle ones to
//! hibernate.
//!
//! It looks only through the instances that have an executor ([`Executing`]), not
//! through every registered one: with a budget most instances hibernate (100,000 beside
//! 1,000 live), and the thread wakes at every start and revival.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use once_cell::sync::Lazy;
use parking_lot::{Condvar, Mutex};

use crate::hibernation::SETTINGS;
use crate::instance::{Activity, Command, Shared};

/// The instances that have an executor (starting, live or reviving), by address.
static EXECUTING: Lazy<Mutex<HashMap<usize, Weak<Shared>>>> =
    Lazy::new(|| Mutex::new(HashMap::new()));

/// Counts an instance among those with an executor, for as long as it is held (by the
/// executor's thread).
pub struct Executing(usize);

impl Executing {
    pub fn new(shared: &Arc<Shared>) -> Executing {
        let key = Arc::as_ptr(shared) as usize;
        EXECUTING.lock().insert(key, Arc::downgrade(shared));
        Executing(key)
    }
}

impl Drop for Executing {
    fn drop(&mut self) {
        EXECUTING.lock().remove(&self.0);
    }
}

/// Wakes the budget thread (after a start or a revival made one more instance live).
pub fn check_budget() {
    if SETTINGS.max_live.load(Ordering::Relaxed) == 0 {
        return;
    }
    let (pending, wake) = &*BUDGET;
    *pending.lock() = true;
    wake.notify_one();
}

/// The budget thread's wake-up: a flag and its condition variable.
static BUDGET: Lazy<(Mutex<bool>, Condvar)> = Lazy::new(|| {
    // A thread of its own: scanning the instances takes milliseconds at 100,000.
    let _ = std::thread::Builder::new()
        .name("hb_beamr_budget".into())
        .spawn(enforce_budget);
    (Mutex::new(false), Condvar::new())
});

/// How often the budget is checked without being woken (instances also go idle).
const BUDGET_PERIOD: Duration = Duration::from_millis(200);

fn enforce_budget() {
    let (pending, wake) = &*BUDGET;
    loop {
        {
            let mut pending = pending.lock();
            if !*pending {
                wake.wait_for(&mut pending, BUDGET_PERIOD);
            }
            *pending = false;
        }
        let max_live = SETTINGS.max_live.load(Ordering::Relaxed);
        if max_live == 0 {
            continue;
        }
        let live: Vec<Arc<Shared>> = EXECUTING
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .filter(|shared| shared.hibernation.is_live() && !shared.is_stopped())
            .collect();
        if live.len() <= max_live {
            continue;
        }
        let excess = live.len() - max_live;
        let mut idle: Vec<Arc<Shared>> = live
            .into_iter()
            .filter(|shared| shared.activity() == Activity::Idle)
            .collect();
        idle.sort_by_key(|shared| shared.hibernation.last_active());
        for shared in idle.into_iter().take(excess) {
            // Pushed, not submitted: a request to hibernate must not revive an instance
            // that hibernated meanwhile (its executor skips it when requests wait).
            if shared.hibernation.request() {
                let _ = shared.mailbox.push(Command::Hibernate { reply: None });
            }
        }
    }
}
