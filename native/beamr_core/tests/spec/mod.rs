//! The spec-test harness's parts, by concern:
//!
//! * [`script`]: the directive model both front ends produce;
//! * [`wast_front`] / [`json_front`]: the `wast` crate and `wast2json` front ends;
//! * [`runner`]: executes directives through preparation and wasmer;
//! * [`linking`], [`host`]: import resolution and the `spectest` module;
//! * [`values`], [`traps`]: how results and traps are judged;
//! * [`exclusions`]: the named, self-verifying exclusion list;
//! * [`report`]: per-directive records and the summary.

pub mod exclusions;
pub mod host;
pub mod json_front;
pub mod linking;
pub mod report;
pub mod runner;
pub mod script;
pub mod traps;
pub mod values;
pub mod wast_front;
