//! How the pass reports a module it cannot read or rewrite.

use crate::prepare::error::PrepareError;

pub(super) fn parse_error(e: wasmparser::BinaryReaderError) -> PrepareError {
    PrepareError(format!("legacy exceptions: {e}"))
}

pub(super) fn encode_error(e: wasm_encoder::reencode::Error) -> PrepareError {
    PrepareError(format!("legacy exceptions: {e}"))
}

/// A body that does not hold together (a `catch` outside a `try`, a label that does not
/// exist, …); validation reports these properly, this pass only refuses to guess.
pub(super) fn malformed(what: &str) -> PrepareError {
    PrepareError(format!(
        "legacy exceptions: malformed function body: {what}"
    ))
}
