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
static OPEN: Lazy<Mutex<HashMap<PathBuf, Arc<DiskCache>>>> = Lazy::new(|| Mutex::new(HashMap::new()));

/// Distinguishes the temporary files of one process's concurrent writers.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_path(dir: &Path, name: &str) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Writes `bytes` to a new file readable and writable by the owner only.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn read_key(path: &Path) -> io::Result<Key> {
    let mut file = fs::File::open(path)?;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is accessible to others (mode {:o}); it must be 0600", path.display(), mode & 0o777),
        ));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a 32-byte key", path.display()))
    })?;
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
    pub fn open(dir: &Path) -> io::Result<Arc<DiskCache>> {
        let mut open = OPEN.lock();
        if let Some(cache) = open.get(dir) {
            return Ok(cache.clone());
        }
        fs::create_dir_all(dir)?;
        let key = load_or_create_key(dir)?;
        let cache = Arc::new(DiskCache { dir: dir.to_path_buf(), key });
        open.insert(dir.to_path_buf(), cache.clone());
        Ok(cache)
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
        let bytes = fs::read(self.entry_path(header)).ok()?;
        let (found, payload) = artifact::open(&bytes, &[&self.key]).ok()?;
        if found != *header {
            return None;
        }
        let start = payload.as_ptr() as usize - bytes.as_ptr() as usize;
        let payload = start..start + payload.len();
        Some(Entry { bytes, payload })
    }

    pub fn contains(&self, header: &Header) -> bool {
        self.entry_path(header).exists()
    }

    /// Stores `payload` (serialized native code) as the entry for `header`, replacing any.
    pub fn store(&self, header: &Header, payload: &[u8]) -> io::Result<()> {
        let name = Self::entry_name(header);
        let temp = temp_path(&self.dir, &name);
        let sealed = artifact::seal(header, payload, &self.key);
        let written = write_new(&temp, &sealed).and_then(|()| fs::rename(&temp, self.dir.join(&name)));
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
        let dir = std::env::temp_dir().join(format!("hb_beamr_disk_cache_{tag}_{}", std::process::id()));
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
        let mode = fs::metadata(dir.join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(Arc::ptr_eq(&cache, &DiskCache::open(&dir).unwrap()));
        assert_eq!(read_key(&dir.join(KEY_FILE)).unwrap(), *cache.key());

        assert!(cache.load(&header(1)).is_none());
        cache.store(&header(1), b"code").unwrap();
        assert_eq!(cache.load(&header(1)).unwrap().payload(), b"code");
        assert!(cache.load(&header(2)).is_none());
        // No temporary files are left behind.
        let names: Vec<String> =
            fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
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

    #[test]
    fn racing_key_creators_agree_on_one_key() {
        let dir = temp_dir("race");
        fs::create_dir_all(&dir).unwrap();
        let keys: Vec<Key> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| load_or_create_key(&dir).unwrap())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]));
        fs::remove_dir_all(&dir).unwrap();
    }
}
