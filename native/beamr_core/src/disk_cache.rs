//! Compiled modules on disk, so that a module compiled once starts in milliseconds after a
//! VM restart. Each entry is an [`artifact`](crate::artifact) authenticated with the cache
//! directory's own key, so a file that anyone else put there (or a torn or corrupt write)
//! fails the MAC and is recompiled and replaced, never loaded.
//!
//! * The key is `hb_beamr.key`: 32 random bytes, created with mode 0600 by the first process
//!   that opens the directory (created under a temporary name, then hard-linked into place,
//!   so two processes opening a new directory at once agree on one key). A key file that
//!   others may read or write, or that has the wrong size, makes the directory unusable:
//!   whoever can read it can make entries this node will run.
//! * Entries are named by the SHA-256 of everything that determines the code: the source's
//!   SHA-256, the preparation options and the engine identity. A name is not authenticated,
//!   so the header inside must match the request too.
//! * Writers write a temporary file and rename it over the entry: readers see the old file
//!   or the new one, whole, and concurrent writers of the same entry both write valid files.
//! * Anyone who can write to the directory may put anything under these names: a FIFO, a
//!   device, a symlink to `/dev/zero`, a huge file. Only a regular file owned by this
//!   process's user, of at most [`KEY_BYTES`] (the key) or [`MAX_ENTRY_BYTES`] (an entry), is
//!   read, and it is opened without following symlinks or blocking ([`open_private`]). A bad
//!   entry is a miss (recompiled and replaced); a bad key file makes the directory unusable.
//! * No lock is held across file I/O: a slow disk delays only the starts that use it.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use once_cell::sync::Lazy;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::artifact::{self, Header, Key};

pub const KEY_FILE: &str = "hb_beamr.key";
const ENTRY_SUFFIX: &str = ".hbm";
/// The size of the key file.
pub const KEY_BYTES: u64 = 32;
/// The largest entry read (and so the largest compiled module the cache keeps): 1 GiB,
/// beyond the native code of any module wasmer can compile here (AOS's is ~15 MB).
pub const MAX_ENTRY_BYTES: u64 = 1 << 30;

/// An authenticated entry read from the cache.
pub struct Entry {
    bytes: Vec<u8>,
    payload: std::ops::Range<usize>,
}

impl Entry {
    /// The serialized module, for `Module::deserialize` (its MAC verified).
    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.payload.clone()]
    }
}

pub struct DiskCache {
    dir: PathBuf,
    key: Key,
}

/// Open caches by directory, so the key file is read once per directory and VM.
static OPEN: Lazy<Mutex<HashMap<PathBuf, Arc<DiskCache>>>> =
    Lazy::new(|| Mutex::new(HashMap::new()));

/// Distinguishes the temporary files of one process's concurrent writers.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_path(dir: &Path, name: &str) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Writes `bytes` to a new file readable and writable by the owner only.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn invalid(kind: io::ErrorKind, path: &Path, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(kind, format!("{}: {why}", path.display()))
}

/// Opens `path` for reading if it is a regular file owned by this process's user, of at
/// most `max` bytes; returns it with its size. A symlink is not followed (`O_NOFOLLOW`) and
/// opening a FIFO or device does not wait for a writer (`O_NONBLOCK`); the checks are made
/// on the opened file (`fstat`), so the file cannot be swapped between check and read.
fn open_private(path: &Path, max: u64) -> io::Result<(fs::File, u64)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => invalid(io::ErrorKind::InvalidData, path, "is a symbolic link"),
            _ => e,
        })?;
    let meta = file.metadata()?;
    check_private(&meta, path, max)?;
    Ok((file, meta.len()))
}

/// Whether `meta` is that of a regular file owned by this process's user, of at most `max`
/// bytes.
fn check_private(meta: &fs::Metadata, path: &Path, max: u64) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !meta.file_type().is_file() {
        return Err(invalid(
            io::ErrorKind::InvalidData,
            path,
            "is not a regular file",
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid {
        return Err(invalid(
            io::ErrorKind::PermissionDenied,
            path,
            format_args!(
                "is owned by uid {}, not by this process's {uid}",
                meta.uid()
            ),
        ));
    }
    if meta.len() > max {
        return Err(invalid(
            io::ErrorKind::InvalidData,
            path,
            format_args!("is over {max} bytes"),
        ));
    }
    Ok(())
}

/// The file's contents, `len` bytes as fstat reported (reading stops after `max`: a file
/// that grew since is refused rather than read on).
fn read_bounded(mut file: fs::File, len: u64, max: u64, path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(len as usize)
        .map_err(|_| invalid(io::ErrorKind::OutOfMemory, path, "too large"))?;
    (&mut file).take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(invalid(
            io::ErrorKind::InvalidData,
            path,
            format_args!("is over {max} bytes"),
        ));
    }
    Ok(bytes)
}

fn read_key(path: &Path) -> io::Result<Key> {
    let (file, len) = open_private(path, KEY_BYTES)?;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(invalid(
            io::ErrorKind::PermissionDenied,
            path,
            format_args!(
                "is accessible to others (mode {:o}); it must be 0600",
                mode & 0o777
            ),
        ));
    }
    let bytes = read_bounded(file, len, KEY_BYTES, path)?;
    let bytes: [u8; KEY_BYTES as usize] = bytes
        .try_into()
        .map_err(|_| invalid(io::ErrorKind::InvalidData, path, "is not a 32-byte key"))?;
    Ok(Key(bytes))
}

/// Reads the directory's key, creating it if there is none.
fn load_or_create_key(dir: &Path) -> io::Result<Key> {
    let path = dir.join(KEY_FILE);
    match read_key(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    let temp = temp_path(dir, KEY_FILE);
    write_new(&temp, &Key::random().0)?;
    // A hard link never replaces an existing file: of two processes racing here, one
    // links its key and the other reads that one.
    let linked = fs::hard_link(&temp, &path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    read_key(&path)
}

impl DiskCache {
    /// The cache in `dir` (created if missing, with its key).
    /// The lock is held only to look up and insert: two threads opening a new directory at
    /// once both read its key (they agree on it, see [`load_or_create_key`]) and the first
    /// to finish is kept.
    pub fn open(dir: &Path) -> io::Result<Arc<DiskCache>> {
        if let Some(cache) = OPEN.lock().get(dir) {
            return Ok(cache.clone());
        }
        fs::create_dir_all(dir)?;
        let key = load_or_create_key(dir)?;
        let cache = Arc::new(DiskCache {
            dir: dir.to_path_buf(),
            key,
        });
        Ok(OPEN
            .lock()
            .entry(dir.to_path_buf())
            .or_insert(cache)
            .clone())
    }

    pub fn key(&self) -> &Key {
        &self.key
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_name(header: &Header) -> String {
        let mut hash = Sha256::new();
        hash.update(header.source_sha256);
        hash.update(format!("{:?}", header.options).as_bytes());
        hash.update(header.engine.as_bytes());
        let digest = hash.finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        hex + ENTRY_SUFFIX
    }

    pub fn entry_path(&self, header: &Header) -> PathBuf {
        self.dir.join(Self::entry_name(header))
    }

    /// The entry for `header`, if there is one that this cache's key authenticates and that
    /// was compiled from the same source with the same options for this engine. Anything
    /// else is `None`.
    pub fn load(&self, header: &Header) -> Option<Entry> {
        let path = self.entry_path(header);
        let (file, len) = open_private(&path, MAX_ENTRY_BYTES).ok()?;
        let bytes = read_bounded(file, len, MAX_ENTRY_BYTES, &path).ok()?;
        let (found, payload) = artifact::open(&bytes, &[&self.key]).ok()?;
        if found != *header {
            return None;
        }
        let start = payload.as_ptr() as usize - bytes.as_ptr() as usize;
        let payload = start..start + payload.len();
        Some(Entry { bytes, payload })
    }

    /// Whether a file that [`load`](Self::load) would read holds the entry for `header`
    /// (its contents are not checked): anything else under its name is to be replaced.
    pub fn contains(&self, header: &Header) -> bool {
        let path = self.entry_path(header);
        fs::symlink_metadata(&path)
            .is_ok_and(|meta| check_private(&meta, &path, MAX_ENTRY_BYTES).is_ok())
    }

    /// Stores `payload` (serialized native code) as the entry for `header`, replacing any.
    pub fn store(&self, header: &Header, payload: &[u8]) -> io::Result<()> {
        let name = Self::entry_name(header);
        let temp = temp_path(&self.dir, &name);
        let sealed = artifact::seal(header, payload, &self.key);
        let written =
            write_new(&temp, &sealed).and_then(|()| fs::rename(&temp, self.dir.join(&name)));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::PrepareOptions;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("hb_beamr_disk_cache_{tag}_{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn header(source: u8) -> Header {
        Header::current([source; 32], &PrepareOptions::default())
    }

    #[test]
    fn creates_a_private_key_once_and_stores_entries() {
        let dir = temp_dir("basic");
        let cache = DiskCache::open(&dir).unwrap();
        let mode = fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(Arc::ptr_eq(&cache, &DiskCache::open(&dir).unwrap()));
        assert_eq!(read_key(&dir.join(KEY_FILE)).unwrap(), *cache.key());

        assert!(cache.load(&header(1)).is_none());
        cache.store(&header(1), b"code").unwrap();
        assert_eq!(cache.load(&header(1)).unwrap().payload(), b"code");
        assert!(cache.load(&header(2)).is_none());
        // No temporary files are left behind.
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ignores_foreign_corrupt_and_misplaced_entries() {
        let dir = temp_dir("foreign");
        let cache = DiskCache::open(&dir).unwrap();
        let path = cache.entry_path(&header(1));
        // Written by someone with another key.
        fs::write(&path, artifact::seal(&header(1), b"evil", &Key::random())).unwrap();
        assert!(cache.load(&header(1)).is_none());
        // Corrupt.
        fs::write(&path, b"\0hbbeamr garbage").unwrap();
        assert!(cache.load(&header(1)).is_none());
        // A genuine entry of another module renamed to this one's name.
        fs::write(&path, artifact::seal(&header(2), b"other", cache.key())).unwrap();
        assert!(cache.load(&header(1)).is_none());
        // Replaced by a good one.
        cache.store(&header(1), b"code").unwrap();
        assert!(cache.load(&header(1)).is_some());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_a_key_file_others_can_read_or_of_the_wrong_size() {
        let dir = temp_dir("badkey");
        fs::create_dir_all(&dir).unwrap();
        let key = dir.join(KEY_FILE);
        fs::write(&key, [0u8; 32]).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(DiskCache::open(&dir).is_err());
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&key, [0u8; 5]).unwrap();
        assert!(DiskCache::open(&dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Runs `f` on another thread and fails the test if it takes over 5 s (a read that
    /// blocks would otherwise hang the test run).
    fn promptly<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()));
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("blocked on a file")
    }

    fn mkfifo(path: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(
            unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
            0,
            "mkfifo {}",
            path.display()
        );
    }

    #[test]
    fn refuses_a_key_file_that_is_a_fifo_a_symlink_or_a_directory() {
        let dir = temp_dir("oddkey");
        fs::create_dir_all(&dir).unwrap();
        let key = dir.join(KEY_FILE);
        mkfifo(&key);
        let d = dir.clone();
        let opened = promptly(move || DiskCache::open(&d).map(|_| ()));
        assert!(opened
            .unwrap_err()
            .to_string()
            .contains("not a regular file"));
        fs::remove_file(&key).unwrap();

        let target = dir.join("real.key");
        fs::write(&target, [7u8; 32]).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&target, &key).unwrap();
        assert!(DiskCache::open(&dir)
            .map(|_| ())
            .unwrap_err()
            .to_string()
            .contains("symbolic link"));
        fs::remove_file(&key).unwrap();

        fs::create_dir(&key).unwrap();
        assert!(DiskCache::open(&dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_entry_that_is_a_fifo_a_device_or_too_large_is_a_miss_and_replaced() {
        let dir = temp_dir("oddentry");
        let cache = DiskCache::open(&dir).unwrap();
        let path = cache.entry_path(&header(1));
        type Make<'a> = &'a dyn Fn(&Path);
        let shapes: [(&str, Make); 3] = [
            ("fifo", &|p| mkfifo(p)),
            ("symlink to /dev/zero", &|p| {
                std::os::unix::fs::symlink("/dev/zero", p).unwrap()
            }),
            ("sparse file over the cap", &|p| {
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(p)
                    .unwrap();
                file.set_len(MAX_ENTRY_BYTES + 1).unwrap();
            }),
        ];
        for (what, make) in shapes {
            make(&path);
            assert!(!cache.contains(&header(1)), "{what}");
            let c = cache.clone();
            assert!(promptly(move || c.load(&header(1)).is_none()), "{what}");
            cache.store(&header(1), b"code").unwrap();
            assert_eq!(cache.load(&header(1)).unwrap().payload(), b"code", "{what}");
            fs::remove_file(&path).unwrap();
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn racing_key_creators_agree_on_one_key() {
        let dir = temp_dir("race");
        fs::create_dir_all(&dir).unwrap();
        let keys: Vec<Key> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create_key(&dir).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]));
        fs::remove_dir_all(&dir).unwrap();
    }
}
