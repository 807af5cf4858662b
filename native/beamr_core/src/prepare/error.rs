//! The error of every pass.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareError(pub String);

impl fmt::Display for PrepareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PrepareError {}

/// A parse or validation error of a module being prepared.
pub(super) fn invalid(e: wasmparser::BinaryReaderError) -> PrepareError {
    PrepareError(e.to_string())
}
