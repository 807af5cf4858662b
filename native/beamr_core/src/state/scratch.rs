//! The buffers and zstd contexts images are made and read with, kept for the next image.
//!
//! An image passes through buffers the size of the pages it holds (about 1.6 MiB for an
//! AOS process after an Eval) and a zstd context (hundreds of KiB of tables). Allocated
//! afresh each time, each is a new mapping (glibc maps allocations above 128 KiB, the
//! threshold ERTS fixes), and every page of it faults when first written: that cost more
//! than compressing. A few are kept, so memory stays bounded: `KEPT_BUFFERS` buffers of at
//! most `KEPT_BYTES` each, and `KEPT_CONTEXTS` contexts of each kind.

use std::io;
use std::ops::{Deref, DerefMut};

use parking_lot::Mutex;
use zstd::bulk::{Compressor, Decompressor};

const KEPT_BUFFERS: usize = 4;
const KEPT_BYTES: usize = 4 << 20;
const KEPT_CONTEXTS: usize = 2;

static BUFFERS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
static COMPRESSORS: Mutex<Vec<Compressor<'static>>> = Mutex::new(Vec::new());
static DECOMPRESSORS: Mutex<Vec<Decompressor<'static>>> = Mutex::new(Vec::new());

/// A buffer that goes back to the kept ones when dropped (if small enough).
pub struct Scratch(Vec<u8>);

impl Scratch {
    /// An empty buffer with room for `capacity` bytes; None when it cannot be allocated
    /// (the sizes come from memory's size or from a file).
    pub fn with_capacity(capacity: usize) -> Option<Scratch> {
        let mut buffer = BUFFERS.lock().pop().unwrap_or_default();
        buffer.clear();
        buffer.try_reserve_exact(capacity).ok()?;
        Some(Scratch(buffer))
    }

    /// A buffer of `len` zeros; None when it cannot be allocated.
    pub fn zeroed(len: usize) -> Option<Scratch> {
        let mut scratch = Scratch::with_capacity(len)?;
        scratch.0.resize(len, 0);
        Some(scratch)
    }
}

impl Deref for Scratch {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.0.capacity() <= KEPT_BYTES {
            let mut kept = BUFFERS.lock();
            if kept.len() < KEPT_BUFFERS {
                kept.push(std::mem::take(&mut self.0));
            }
        }
    }
}

/// `data` compressed at zstd level `level` (every kept context has it).
pub fn compress(data: &[u8], level: i32) -> io::Result<Vec<u8>> {
    let mut context = match COMPRESSORS.lock().pop() {
        Some(context) => context,
        None => Compressor::new(level)?,
    };
    let bound = zstd::zstd_safe::compress_bound(data.len());
    let mut out = Scratch::with_capacity(bound).ok_or(io::ErrorKind::OutOfMemory)?;
    let compressed = context.compress_to_buffer(data, &mut *out);
    keep(&COMPRESSORS, context);
    compressed?;
    // Copied out: the scratch buffer has room for the worst case, and an image lives as
    // long as its hibernation.
    Ok(out.to_vec())
}

/// Decompresses `data` into `out` (whose capacity bounds the output): its length.
pub fn decompress(data: &[u8], out: &mut Vec<u8>) -> io::Result<usize> {
    let mut context = match DECOMPRESSORS.lock().pop() {
        Some(context) => context,
        None => Decompressor::new()?,
    };
    let decompressed = context.decompress_to_buffer(data, out);
    keep(&DECOMPRESSORS, context);
    decompressed
}

fn keep<T>(kept: &Mutex<Vec<T>>, context: T) {
    let mut kept = kept.lock();
    if kept.len() < KEPT_CONTEXTS {
        kept.push(context);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reuses_buffers() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for _ in 0..3 {
            let compressed = compress(&data, 1).unwrap();
            assert!(compressed.len() < data.len() / 10);
            let mut out = Scratch::with_capacity(data.len()).unwrap();
            assert_eq!(decompress(&compressed, &mut out).unwrap(), data.len());
            assert_eq!(&out[..], &data[..]);
            // A reused buffer comes back as asked: empty, or zeros.
            drop(out);
            assert!(Scratch::zeroed(1000).unwrap().iter().all(|&b| b == 0));
        }
        // Output that does not fit is an error, not a longer buffer.
        let compressed = compress(&data, 1).unwrap();
        let mut small = Vec::with_capacity(10);
        assert!(decompress(&compressed, &mut small).is_err());
        assert!(small.capacity() < 1000);
    }
}
