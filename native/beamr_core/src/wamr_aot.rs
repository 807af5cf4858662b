//! WAMR AOT images: what `wamrc` compiles a `.wasm` module to for WAMR's own loader.
//!
//! HyperBEAM's `hb_beamr` accepts them (`start(Bin, aot)`), but they hold machine code
//! for WAMR's runtime, not WebAssembly: nothing here can run one. Users switching from
//! WAMR may still pass one, so it is recognised by its magic number and refused with a
//! message that says what to do instead, rather than a parse error about WAT text.

/// The first four bytes of every WAMR AOT image.
const MAGIC: &[u8; 4] = b"\0aot";

/// Why `source` cannot be started, if it is a WAMR AOT image.
pub fn rejection(source: &[u8]) -> Option<String> {
    source.starts_with(MAGIC).then(|| {
        "this is a WAMR AOT image (magic \\0aot), compiled by wamrc for WAMR's own runtime; \
         hb_beamr compiles WebAssembly itself, so start the .wasm module it was compiled from \
             instead"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_the_aot_magic() {
        let message = rejection(b"\0aot\x03\0\0\0rest of the image").unwrap();
        assert!(message.contains("start the .wasm"), "{message}");
        assert!(rejection(b"\0asm\x01\0\0\0").is_none());
        assert!(rejection(b"(module)").is_none());
        assert!(rejection(b"\0ao").is_none());
    }
}
