//! The instance resource: what NIFs share with an instance's executor thread.
//!
//! The Store and wasmer Instance never leave the executor thread; this holds only what
//! other threads need: the mailbox, the stop flag, the export/import tables used to
//! check arguments before queueing, and the interrupter that stops running wasm.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use rustler::{Env, LocalPid, Monitor, Resource, ResourceArc};
use wasmer::{FunctionType, Interrupter};

use crate::command::Command;
use crate::mailbox::{Closed, Mailbox};
use crate::registry;

pub struct ExportedFunction {
    pub name: String,
    pub ty: FunctionType,
}

pub struct ImportedFunction {
    pub module: String,
    pub name: String,
    pub signature: String,
    pub ty: FunctionType,
}

pub struct Shared {
    /// The process whose pid is the public handle; its death stops the instance.
    pub owner: LocalPid,
    pub mailbox: Mailbox,
    pub stopped: AtomicBool,
    /// Set while the executor runs a call, so stop knows whether to interrupt wasm.
    /// On a cache line of its own: the executor writes it around every call, and it must
    /// not share a line with the mailbox the NIFs write.
    pub busy: CachePadded<AtomicBool>,
    pub exited: AtomicBool,
    pub interrupter: Mutex<Option<Interrupter>>,
    pub exports: Vec<ExportedFunction>,
    pub export_index: HashMap<String, usize>,
    pub imports: Vec<ImportedFunction>,
}

pub struct InstanceResource {
    pub shared: Arc<Shared>,
}

#[rustler::resource_impl]
impl Resource for InstanceResource {
    const IMPLEMENTS_DOWN: bool = true;

    fn down<'a>(&'a self, _env: Env<'a>, pid: LocalPid, _monitor: Monitor) {
        if pid == self.shared.owner {
            self.shared.stop();
        } else {
            let _ = self.shared.mailbox.push(Command::CallerDown(pid));
        }
    }
}

/// How often and how long a stop keeps interrupting wasm that has not yet noticed it.
const INTERRUPT_RETRY: Duration = Duration::from_millis(2);
const INTERRUPT_GIVE_UP: Duration = Duration::from_secs(10);

impl Shared {
    pub fn new(
        owner: LocalPid,
        exports: Vec<ExportedFunction>,
        imports: Vec<ImportedFunction>,
    ) -> Shared {
        let export_index = exports.iter().enumerate().map(|(i, e)| (e.name.clone(), i)).collect();
        Shared {
            owner,
            mailbox: Mailbox::new(),
            stopped: AtomicBool::new(false),
            busy: CachePadded::new(AtomicBool::new(false)),
            exited: AtomicBool::new(false),
            interrupter: Mutex::new(None),
            exports,
            export_index,
            imports,
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Queues a command unless the instance is stopping or gone.
    pub fn submit(&self, command: Command) -> Result<(), Closed> {
        if self.is_stopped() {
            return Err(Closed);
        }
        self.mailbox.push(command)
    }

    /// Ends the instance: idempotent, returns at once. Running wasm is interrupted (the
    /// signal is retried from a helper thread, since one can land between two wasm
    /// calls); an executor waiting in an import notices the flag when woken.
    pub fn stop(self: &Arc<Self>) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        registry::remove(&self.owner);
        let _ = self.mailbox.push(Command::Stop);
        // SeqCst pairs with the executor's `busy` store then `stopped` load.
        if self.busy.load(Ordering::SeqCst) {
            let shared = Arc::clone(self);
            let _ = std::thread::Builder::new().name("hb_beamr_stop".into()).spawn(move || {
                let deadline = std::time::Instant::now() + INTERRUPT_GIVE_UP;
                while !shared.exited.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
                    if let Some(interrupter) = shared.interrupter.lock().as_ref() {
                        interrupter.interrupt();
                    }
                    std::thread::sleep(INTERRUPT_RETRY);
                }
            });
        }
    }
}

impl InstanceResource {
    pub fn new(shared: Arc<Shared>) -> ResourceArc<InstanceResource> {
        ResourceArc::new(InstanceResource { shared })
    }
}
