//! Public handles are pids (HyperBEAM checks `is_pid/1`); this maps each owner pid to
//! its instance so NIFs can find it without a round trip through the owner process.

use std::collections::HashMap;

use once_cell::sync::Lazy;
use parking_lot::RwLock;
use rustler::{LocalPid, ResourceArc};

use crate::instance::InstanceResource;

static INSTANCES: Lazy<RwLock<HashMap<LocalPid, ResourceArc<InstanceResource>>>> =
    Lazy::new(|| RwLock::new(HashMap::new()));

pub fn insert(owner: LocalPid, instance: ResourceArc<InstanceResource>) {
    INSTANCES.write().insert(owner, instance);
}

pub fn lookup(owner: &LocalPid) -> Option<ResourceArc<InstanceResource>> {
    INSTANCES.read().get(owner).cloned()
}

pub fn remove(owner: &LocalPid) {
    INSTANCES.write().remove(owner);
}
