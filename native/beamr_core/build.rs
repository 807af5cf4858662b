//! Gives the crate `BEAMR_PREPARATION_DIGEST`: a digest of the preparation passes' sources
//! (`src/prepare`, tests left out). The native code of a module depends on what
//! preparation made of it, so the engine identity that artifacts and disk-cache entries
//! carry includes this digest: code prepared by another version of the passes (without a
//! check a later version adds, say) is compiled again, never loaded.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn main() {
    let root = Path::new("src/prepare");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(root, &mut files);
    files.sort();
    let mut hasher = Sha256::new();
    for file in &files {
        let relative = file.strip_prefix(root).expect("under src/prepare");
        let contents = fs::read(file).expect("a readable source file");
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update((contents.len() as u64).to_le_bytes());
        hasher.update(&contents);
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let digest: String = hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("cargo:rustc-env=BEAMR_PREPARATION_DIGEST={digest}");
}

/// The `.rs` files under `dir` that build the library (not the tests').
fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("a readable source directory") {
        let path = entry.expect("a directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "tests" {
                collect(&path, files);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" && name != "test_support.rs" {
            files.push(path);
        }
    }
}
