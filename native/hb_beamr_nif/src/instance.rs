//! The instance resource: what NIFs share with an instance's executor thread.
//!
//! The Store and wasmer Instance never leave the executor thread; this holds only what
//! other threads need: the mailbox, the stop flag, the export/import tables used to
//! check arguments before queueing, and what `hb_beamr:info/1` reports (the module it
//! runs, and counters the executor keeps up to date with cheap relaxed stores).

use crate::emscripten::Handler;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use beamr_core::compile::Origin;
use beamr_core::dirty_pages::Policy;
use rustler::{Env, LocalPid, Monitor, Resource, ResourceArc};
use wasmer::FunctionType;

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
    pub handler: Handler,
}

/// What the executor is doing, for `info/1`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Activity {
    /// Waiting for a command.
    Idle = 0,
    /// Running wasm.
    Running = 1,
    /// Waiting for the calling process to answer an import.
    InImport = 2,
    /// Instantiating the module (and running its start function).
    Starting = 3,
}

/// The module an instance runs: the SHA-256 of its source and how it was obtained.
pub struct ModuleInfo {
    pub sha256: [u8; 32],
    pub origin: Origin,
    /// What its snapshots are bound to (`artifact::Header::state_identity`).
    pub state_identity: [u8; 32],
}

pub struct Shared {
    /// The process whose pid is the public handle; its death stops the instance.
    pub owner: LocalPid,
    pub mailbox: Mailbox,
    pub stopped: AtomicBool,
    /// The fuel the last outermost call used (`hb_beamr:gas_used/1`).
    pub gas_used: AtomicU64,
    /// An `Activity`, written by the executor only.
    pub activity: AtomicU8,
    /// Outermost calls the executor has run to their end.
    pub calls: AtomicU64,
    /// The size of memory 0 when the executor last looked (after instantiation, each
    /// outermost call and memory operation, and at each import).
    pub memory_bytes: AtomicU64,
    pub module: ModuleInfo,
    pub exports: Vec<ExportedFunction>,
    pub export_index: HashMap<String, usize>,
    /// The length in bytes of the longest export name: no longer name is looked up.
    pub longest_export_name: usize,
    pub imports: Vec<ImportedFunction>,
    /// How incremental snapshots find changed pages (start option `dirty_tracking`).
    pub dirty_tracking: Policy,
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

impl Shared {
    pub fn new(
        owner: LocalPid,
        module: ModuleInfo,
        exports: Vec<ExportedFunction>,
        imports: Vec<ImportedFunction>,
        dirty_tracking: Policy,
    ) -> Shared {
        let export_index = exports
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        let longest_export_name = exports.iter().map(|e| e.name.len()).max().unwrap_or(0);
        Shared {
            owner,
            mailbox: Mailbox::new(),
            stopped: AtomicBool::new(false),
            gas_used: AtomicU64::new(0),
            activity: AtomicU8::new(Activity::Starting as u8),
            calls: AtomicU64::new(0),
            memory_bytes: AtomicU64::new(0),
            module,
            exports,
            export_index,
            longest_export_name,
            imports,
            dirty_tracking,
        }
    }

    /// Executor side. Relaxed: readers only report it, nothing is synchronised by it.
    pub fn set_activity(&self, activity: Activity) {
        self.activity.store(activity as u8, Ordering::Relaxed);
    }

    pub fn activity(&self) -> Activity {
        match self.activity.load(Ordering::Relaxed) {
            1 => Activity::Running,
            2 => Activity::InImport,
            3 => Activity::Starting,
            _ => Activity::Idle,
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

    /// Ends the instance: idempotent, returns at once. Running wasm notices at its next
    /// interruption check (see `beamr_core::prepare::interrupt`) and an executor waiting
    /// for a command or an import reply is woken by the `Stop` command.
    pub fn stop(self: &Arc<Self>) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        registry::remove(&self.owner);
        let _ = self.mailbox.push(Command::Stop);
    }
}

impl InstanceResource {
    pub fn new(shared: Arc<Shared>) -> ResourceArc<InstanceResource> {
        ResourceArc::new(InstanceResource { shared })
    }
}
