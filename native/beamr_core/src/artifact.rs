//! The compiled-artifact format: wasmer's serialized native code behind a header that says
//! what it was compiled from and for, authenticated with HMAC-SHA-256.
//!
//! Loading native code is running it: wasmer's `Module::deserialize` trusts its input
//! completely (it maps the bytes as executable code), so [`open`] checks the MAC before
//! anything else reads the header or the payload, and a caller only ever hands wasmer a
//! payload that [`open`] returned. Whoever holds a key can make artifacts that this process
//! will run; keys never leave the node unless an operator copies them.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! 0       magic "\0hbbeamr" (no wasm binary, which starts "\0asm", nor WAT text starts so)
//! 8       format version: u32
//! 12      header length H: u32
//! 16      header: engine identity (u32 length + UTF-8), SHA-256 of the source module (32),
//!         preparation options (wamr_compat u8, memory_limit u64, deterministic u8)
//! 16+H    payload length P: u64
//! 24+H    payload: wasmer's `Module::serialize` output
//! 24+H+P  HMAC-SHA-256 over bytes [0, 24+H+P)
//! ```

use std::fmt;

use hmac::{Hmac, Mac};
use once_cell::sync::Lazy;
use sha2::Sha256;

use crate::engine;
use crate::prepare::PrepareOptions;

pub const MAGIC: &[u8; 8] = b"\0hbbeamr";
/// Bumped whenever the layout or the header's fields change.
pub const FORMAT_VERSION: u32 = 2;
const MAC_LEN: usize = 32;
const PREFIX_LEN: usize = 16;

/// A 256-bit HMAC key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// A fresh key from the OS's random source.
    pub fn random() -> Key {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS random source failed");
        Key(bytes)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)") // never print key material
    }
}

/// The key of artifacts made by this OS process when no cache directory gives one: such
/// artifacts load only until the VM exits.
pub fn process_key() -> &'static Key {
    static KEY: Lazy<Key> = Lazy::new(Key::random);
    &KEY
}

/// What an artifact was compiled from and for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// `engine::identity` of the engine that compiled it.
    pub engine: String,
    pub source_sha256: [u8; 32],
    pub options: PrepareOptions,
}

/// Names the layout of an instance's state that snapshots hold (memory 0 with WAMR's page
/// or not, the mutable globals by index, table 0): changed only when that layout does.
const STATE_LAYOUT: &[u8] = b"hb_beamr state layout 1";

impl Header {
    /// The header of code compiled here, now, from a source with this hash.
    pub fn current(source_sha256: [u8; 32], options: &PrepareOptions) -> Header {
        Header {
            engine: engine::identity(options.engine_kind()),
            source_sha256,
            options: options.clone(),
        }
    }

    /// The module a snapshot of an instance of this code is bound to: its source and what
    /// decides the state's layout, not the prepared bytes, so that snapshots outlive
    /// changes to preparation that leave the layout alone (the interruption checks, the
    /// maxima fitted to `memory_limit`).
    pub fn state_identity(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut hasher = Sha256::new();
        hasher.update(STATE_LAYOUT);
        hasher.update(self.source_sha256);
        hasher.update([u8::from(self.options.wamr_compat)]);
        hasher.finalize().into()
    }
}

/// Why bytes were refused as an artifact. None of these ever reaches wasmer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArtifactError {
    /// Does not start with [`MAGIC`].
    NotAnArtifact,
    /// Shorter than its lengths say.
    Truncated,
    /// Longer than its lengths say, or a header that does not parse.
    Malformed,
    /// Another format version (an older or newer hb_beamr).
    FormatVersion(u32),
    /// The MAC does not verify with any key given: tampered with, or made elsewhere.
    BadMac,
    /// Made by another wasmer, compiler configuration, target or CPU (the artifact's engine).
    EngineMismatch(String),
}

impl fmt::Display for ArtifactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArtifactError::NotAnArtifact => f.write_str("not an hb_beamr artifact"),
            ArtifactError::Truncated => f.write_str("truncated artifact"),
            ArtifactError::Malformed => f.write_str("malformed artifact"),
            ArtifactError::FormatVersion(v) => {
                write!(f, "artifact format version {v}, expected {FORMAT_VERSION}")
            }
            ArtifactError::BadMac => f.write_str("artifact authentication failed"),
            ArtifactError::EngineMismatch(e) => {
                write!(f, "artifact compiled for another engine: {e}")
            }
        }
    }
}

impl std::error::Error for ArtifactError {}

/// Whether `bytes` start like an artifact (or are a truncated start of one). Two bytes
/// suffice: wasm starts `\0a`, WAT text never with a NUL.
pub fn is_artifact(bytes: &[u8]) -> bool {
    let n = bytes.len().min(MAGIC.len());
    n >= 2 && bytes[..n] == MAGIC[..n]
}

fn mac(key: &Key) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC takes keys of any length")
}

fn encode_header(header: &Header) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + header.engine.len());
    out.extend_from_slice(&(header.engine.len() as u32).to_le_bytes());
    out.extend_from_slice(header.engine.as_bytes());
    out.extend_from_slice(&header.source_sha256);
    let opts = &header.options;
    out.push(opts.wamr_compat as u8);
    out.extend_from_slice(&opts.memory_limit.to_le_bytes());
    out.push(opts.deterministic as u8);
    out
}

/// A reader over authenticated bytes: any shortfall is `Malformed` (a writer's bug, as the
/// MAC verified).
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ArtifactError> {
        if self.0.len() < n {
            return Err(ArtifactError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, ArtifactError> {
        Ok(self.take(1)?[0])
    }
    fn bool(&mut self) -> Result<bool, ArtifactError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(ArtifactError::Malformed),
        }
    }
    fn u32(&mut self) -> Result<u32, ArtifactError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, ArtifactError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
}

fn decode_header(bytes: &[u8]) -> Result<Header, ArtifactError> {
    let mut r = Reader(bytes);
    let engine_len = r.u32()? as usize;
    let engine =
        String::from_utf8(r.take(engine_len)?.to_vec()).map_err(|_| ArtifactError::Malformed)?;
    let source_sha256 = r.take(32)?.try_into().unwrap();
    let wamr_compat = r.bool()?;
    let memory_limit = r.u64()?;
    let deterministic = r.bool()?;
    if !r.0.is_empty() {
        return Err(ArtifactError::Malformed);
    }
    let options = PrepareOptions {
        wamr_compat,
        memory_limit,
        deterministic,
    };
    Ok(Header {
        engine,
        source_sha256,
        options,
    })
}

/// Wraps `payload` (wasmer's serialized module) in an artifact authenticated with `key`.
pub fn seal(header: &Header, payload: &[u8], key: &Key) -> Vec<u8> {
    let header_bytes = encode_header(header);
    let mut out = Vec::with_capacity(PREFIX_LEN + header_bytes.len() + 8 + payload.len() + MAC_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header_bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&header_bytes);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let mut mac = mac(key);
    mac.update(&out);
    out.extend_from_slice(&mac.finalize().into_bytes());
    out
}

/// Checks an artifact (MAC with any of `keys`, then the engine it was compiled for) and
/// returns its header and the payload for `Module::deserialize`.
pub fn open<'a>(bytes: &'a [u8], keys: &[&Key]) -> Result<(Header, &'a [u8]), ArtifactError> {
    let (header, payload) = open_for_engine(bytes, keys)?;
    let expected = engine::identity(header.options.engine_kind());
    if header.engine != expected {
        return Err(ArtifactError::EngineMismatch(header.engine));
    }
    Ok((header, payload))
}

/// [`open`] without the engine check (the unit tests make artifacts for other engines).
fn open_for_engine<'a>(
    bytes: &'a [u8],
    keys: &[&Key],
) -> Result<(Header, &'a [u8]), ArtifactError> {
    if !is_artifact(bytes) {
        return Err(ArtifactError::NotAnArtifact);
    }
    if bytes.len() < PREFIX_LEN {
        return Err(ArtifactError::Truncated);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(ArtifactError::FormatVersion(version));
    }
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let payload_len_at = PREFIX_LEN + header_len;
    let Some(len_bytes) = bytes.get(payload_len_at..payload_len_at + 8) else {
        return Err(ArtifactError::Truncated);
    };
    let payload_len = u64::from_le_bytes(len_bytes.try_into().unwrap());
    let payload_at = payload_len_at + 8;
    let end = usize::try_from(payload_len)
        .ok()
        .and_then(|p| payload_at.checked_add(p))
        .and_then(|e| e.checked_add(MAC_LEN))
        .ok_or(ArtifactError::Malformed)?;
    if bytes.len() < end {
        return Err(ArtifactError::Truncated);
    }
    if bytes.len() > end {
        return Err(ArtifactError::Malformed);
    }
    let (signed, tag) = bytes.split_at(end - MAC_LEN);
    // verify_slice compares in constant time.
    let verified = keys.iter().any(|key| {
        let mut mac = mac(key);
        mac.update(signed);
        mac.verify_slice(tag).is_ok()
    });
    if !verified {
        return Err(ArtifactError::BadMac);
    }
    let header = decode_header(&bytes[PREFIX_LEN..payload_len_at])?;
    Ok((header, &bytes[payload_at..end - MAC_LEN]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        let options = PrepareOptions {
            wamr_compat: false,
            memory_limit: 17 << 16,
            deterministic: true,
        };
        Header::current([7; 32], &options)
    }

    #[test]
    fn round_trips_header_and_payload() {
        let key = Key::random();
        let sealed = seal(&header(), b"native code", &key);
        assert!(is_artifact(&sealed) && is_artifact(&sealed[..2]));
        assert!(!is_artifact(&sealed[..1]) && !is_artifact(b"\0asm\x01\0\0\0"));
        let (h, payload) = open(&sealed, &[&key]).unwrap();
        assert_eq!(h, header());
        assert_eq!(payload, b"native code");
        // Any of several keys may verify it.
        let other = Key::random();
        assert!(open(&sealed, &[&other, &key]).is_ok());
        // Default options survive too.
        let plain = Header::current([1; 32], &PrepareOptions::default());
        assert_eq!(open(&seal(&plain, b"", &key), &[&key]).unwrap().0, plain);
    }

    #[test]
    fn refuses_other_keys_and_every_tampered_byte() {
        let key = Key::random();
        let sealed = seal(&header(), b"native code", &key);
        assert_eq!(
            open(&sealed, &[&Key::random()]).unwrap_err(),
            ArtifactError::BadMac
        );
        assert_eq!(open(&sealed, &[]).unwrap_err(), ArtifactError::BadMac);
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x01;
            assert!(
                open(&tampered, &[&key]).is_err(),
                "flipping byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn refuses_every_truncation_and_trailing_bytes() {
        let key = Key::random();
        let sealed = seal(&header(), b"native code", &key);
        for len in 0..sealed.len() {
            let err = open(&sealed[..len], &[&key]).unwrap_err();
            assert!(
                matches!(
                    err,
                    ArtifactError::Truncated
                        | ArtifactError::NotAnArtifact
                        | ArtifactError::Malformed
                ),
                "length {len}: {err:?}"
            );
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert_eq!(
            open(&longer, &[&key]).unwrap_err(),
            ArtifactError::Malformed
        );
    }

    #[test]
    fn refuses_garbage_other_versions_and_other_engines() {
        let key = Key::random();
        assert_eq!(
            open(b"\0asm\x01\0\0\0", &[&key]).unwrap_err(),
            ArtifactError::NotAnArtifact
        );
        assert_eq!(
            open(b"(module)", &[&key]).unwrap_err(),
            ArtifactError::NotAnArtifact
        );
        assert_eq!(
            open(b"", &[&key]).unwrap_err(),
            ArtifactError::NotAnArtifact
        );
        // Huge lengths neither overflow nor allocate.
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        huge.extend_from_slice(&0u32.to_le_bytes());
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(open(&huge, &[&key]).is_err());

        let mut sealed = seal(&header(), b"x", &key);
        sealed[8..12].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            open(&sealed, &[&key]).unwrap_err(),
            ArtifactError::FormatVersion(1)
        );

        let foreign = Header {
            engine: "wasmer 9.9.9; llvm; riscv64".into(),
            ..header()
        };
        let sealed = seal(&foreign, b"x", &key);
        assert_eq!(
            open(&sealed, &[&key]).unwrap_err(),
            ArtifactError::EngineMismatch(foreign.engine.clone())
        );
        // The default-engine identity does not pass for a deterministic artifact either.
        let swapped = Header {
            engine: engine::identity(engine::EngineKind::Default),
            ..header()
        };
        assert!(matches!(
            open(&seal(&swapped, b"x", &key), &[&key]),
            Err(ArtifactError::EngineMismatch(_))
        ));
    }
}
