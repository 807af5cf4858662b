//! Hibernation images in a directory (`hibernate_dir`): their names, writing them whole or
//! not at all, and removing those a VM that died left behind.
//!
//! A file is named by the OS process that wrote it and a number unique within that
//! process (`<pid>-<number>.hbimage`): VMs sharing a directory never overwrite each
//! other's images, and the images of a VM that died (its pid no longer runs) are found.
//! The first time a VM writes into a directory it removes such images (and their
//! `.partial` files). A pid reused by another process keeps its files, which is safe: only
//! files of a pid known dead are removed.

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use once_cell::sync::Lazy;
use parking_lot::Mutex;

const EXTENSION: &str = "hbimage";
const PARTIAL: &str = "partial";

/// The path of the image numbered `number` of this process in `dir`.
pub fn path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{}-{number:016x}.{EXTENSION}", std::process::id()))
}

/// Writes `bytes` to `path` whole or not at all: into a temporary file, synced, renamed.
/// The first write into a directory removes what dead VMs left there.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        sweep_once(dir);
    }
    let partial = path.with_extension(PARTIAL);
    let mut file = std::fs::File::create(&partial)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_data());
    if let Err(error) = written.and_then(|()| std::fs::rename(&partial, path)) {
        let _ = std::fs::remove_file(&partial);
        return Err(error);
    }
    Ok(())
}

/// The directories this VM has swept.
static SWEPT: Lazy<Mutex<HashSet<PathBuf>>> = Lazy::new(|| Mutex::new(HashSet::new()));

fn sweep_once(dir: &Path) {
    if !SWEPT.lock().insert(dir.to_path_buf()) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if writer(&name.to_string_lossy()).is_some_and(is_dead) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The pid in the name of an image (or partial image) file.
fn writer(name: &str) -> Option<u32> {
    let stem = name
        .strip_suffix(EXTENSION)
        .or_else(|| name.strip_suffix(PARTIAL))?
        .strip_suffix('.')?;
    let (pid, number) = stem.split_once('-')?;
    let hex = number.len() == 16 && number.bytes().all(|b| b.is_ascii_hexdigit());
    hex.then(|| pid.parse().ok()).flatten()
}

/// Whether no process has this pid (the signal 0 probes without sending anything).
fn is_dead(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    pid > 0
        && unsafe { libc::kill(pid, 0) } != 0
        && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_writer() {
        let dir = Path::new("/images");
        let ours = path(dir, 0xab);
        let name = ours.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(writer(&name), Some(std::process::id()));
        assert_eq!(writer("12-00000000000000ab.partial"), Some(12));
        for other in [
            "12-ab.hbimage",
            "x-00000000000000ab.hbimage",
            "12-00000000000000ab.txt",
            "notes",
        ] {
            assert_eq!(writer(other), None, "{other}");
        }
    }

    #[test]
    fn only_files_of_dead_writers_are_swept() {
        let dir = std::env::temp_dir().join(format!("hb_beamr_image_dir_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // pid_max is at most 2^22: this pid never runs. Pid 1 always does.
        let dead = dir.join("999999999-0000000000000001.hbimage");
        let dead_partial = dir.join("999999999-0000000000000002.partial");
        let alive = dir.join("1-0000000000000003.hbimage");
        let unrelated = dir.join("999999999-notes.txt");
        for file in [&dead, &dead_partial, &alive, &unrelated] {
            std::fs::write(file, b"x").unwrap();
        }
        write(&path(&dir, 4), b"image").unwrap();
        assert!(!dead.exists() && !dead_partial.exists());
        assert!(alive.exists() && unrelated.exists());
        assert_eq!(std::fs::read(path(&dir, 4)).unwrap(), b"image");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
