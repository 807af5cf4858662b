use super::decode::*;
use super::digest::{page_digest, SEGMENT};
use super::format::*;
#[cfg(target_os = "linux")]
use super::test_support::FreshMapping;
use super::*;

const MODULE: ModuleId = [7; 32];

fn sample_memory() -> Vec<u8> {
    (0..2 * WASM_PAGE).map(|i| (i * 31 % 251) as u8).collect()
}

const GLOBALS: [(u32, GlobalValue); 9] = [
    (0, GlobalValue::I32(0xdead_beef)),
    (2, GlobalValue::I64(u64::MAX - 3)),
    (3, GlobalValue::F32(0x3fc0_0000)),
    (4, GlobalValue::F64(0x7ff8_0000_0000_0001)),
    (5, GlobalValue::V128(u128::MAX / 3)),
    (6, GlobalValue::FuncRef(Some(12))),
    (7, GlobalValue::FuncRef(None)),
    (8, GlobalValue::NullExternRef),
    (9, GlobalValue::NullExnRef),
];
const TABLE: [Option<u32>; 4] = [None, Some(0), Some(5), None];
/// Tables 0, 2 (empty), 3 (all null: an externref table, say) and 5.
const TABLES: [(u32, &[Option<u32>]); 4] = [
    (0, &TABLE),
    (2, &[]),
    (3, &[None, None]),
    (5, &[Some(7), None, Some(u32::MAX - 1)]),
];

fn decoded_tables() -> Vec<(u32, TableEntries)> {
    TABLES.iter().map(|(i, e)| (*i, e.to_vec())).collect()
}

fn full(memory: &[u8]) -> (Vec<u8>, Encoded) {
    Parts {
        module: &MODULE,
        lineage: Lineage::Full,
        sequence: 0,
        globals: &GLOBALS,
        tables: &TABLES,
        memory: MemoryParts::Whole { len: memory.len() },
    }
    .encode(memory)
}

fn delta(parent: SnapshotId, sequence: u64, memory: &[u8], runs: &[PageRun]) -> (Vec<u8>, Encoded) {
    Parts {
        module: &MODULE,
        lineage: Lineage::Delta { parent },
        sequence,
        globals: &GLOBALS[..2],
        tables: &TABLES[..2],
        memory: MemoryParts::Changed {
            len: memory.len(),
            runs,
        },
    }
    .encode(memory)
}

#[test]
fn round_trips_every_kind_of_state() {
    let memory = sample_memory();
    let (bytes, encoded) = full(&memory);
    let snapshot = decode(&bytes).unwrap();
    assert_eq!(snapshot.module, MODULE);
    assert_eq!(
        (snapshot.id, snapshot.lineage, snapshot.sequence),
        (encoded.id, Lineage::Full, 0)
    );
    assert_eq!(snapshot.globals, GLOBALS.to_vec());
    assert_eq!(snapshot.tables, decoded_tables());
    assert!(snapshot.every_table);
    assert_eq!(snapshot.memory, Some(MemoryState::Whole(&memory[..])));
    let digests: Vec<u64> = memory.chunks(PAGE).map(page_digest).collect();
    assert_eq!(snapshot.page_digests.as_ref(), Some(&digests));
    assert_eq!(encoded.page_digests, digests);
    snapshot.check_module(&MODULE).unwrap();
}

#[test]
fn round_trips_a_module_without_memory_or_table() {
    for lineage in [Lineage::Full, Lineage::Delta { parent: 5 }] {
        let sequence = if lineage == Lineage::Full { 0 } else { 3 };
        let parts = Parts {
            module: &MODULE,
            lineage,
            sequence,
            globals: &[],
            tables: &[],
            memory: MemoryParts::None,
        };
        let (bytes, encoded) = parts.encode(&[]);
        assert_eq!(bytes.len(), parts.encoded_len());
        let snapshot = decode(&bytes).unwrap();
        let expected = Snapshot {
            module: MODULE,
            id: encoded.id,
            lineage,
            sequence,
            globals: vec![],
            tables: vec![],
            every_table: true,
            memory: None,
            page_digests: Some(vec![]),
        };
        assert_eq!(snapshot, expected);
    }
}

#[test]
fn a_delta_round_trips_its_pages() {
    let mut memory = sample_memory();
    memory.extend(vec![0xee; WASM_PAGE]);
    let runs = [
        PageRun { first: 1, count: 2 },
        PageRun { first: 7, count: 1 },
        PageRun {
            first: 40,
            count: 8,
        },
    ];
    let (bytes, encoded) = delta(99, 4, &memory, &runs);
    let snapshot = decode(&bytes).unwrap();
    assert_eq!(
        (snapshot.id, snapshot.lineage, snapshot.sequence),
        (encoded.id, Lineage::Delta { parent: 99 }, 4)
    );
    let Some(MemoryState::Changed {
        len,
        runs: got,
        pages,
    }) = &snapshot.memory
    else {
        panic!("no pages")
    };
    assert_eq!((*len, &got[..]), (memory.len(), &runs[..]));
    let expected: Vec<u8> = runs
        .iter()
        .flat_map(|r| memory[r.bytes()].to_vec())
        .collect();
    assert_eq!(*pages, &expected[..]);
    assert_eq!(
        snapshot.page_digests,
        Some(expected.chunks(PAGE).map(page_digest).collect())
    );
    // No pages changed: still a delta with memory's size.
    let (bytes, _) = delta(99, 4, &memory, &[]);
    let snapshot = decode(&bytes).unwrap();
    assert_eq!(
        snapshot.memory,
        Some(MemoryState::Changed {
            len: memory.len(),
            runs: vec![],
            pages: &[]
        })
    );
}

/// Large bulks are gathered and hashed by two threads: the same bytes as one would write.
#[test]
fn large_deltas_gather_every_run_in_order() {
    let memory: Vec<u8> = (0..128 * WASM_PAGE * 4)
        .map(|i| ((i >> 12) * 13 + i) as u8)
        .collect();
    let runs: Vec<PageRun> = (0..2000)
        .map(|k| PageRun {
            first: k * 4,
            count: 1 + k % 3,
        })
        .collect();
    let (bytes, _) = delta(1, 1, &memory, &runs);
    let Some(MemoryState::Changed { pages, .. }) = decode(&bytes).unwrap().memory else {
        panic!("no pages")
    };
    let expected: Vec<u8> = runs
        .iter()
        .flat_map(|r| memory[r.bytes()].to_vec())
        .collect();
    assert!(pages.len() > 8 << 20 && pages == &expected[..]);
}

#[test]
fn every_truncation_is_invalid() {
    let memory = vec![0xa5; WASM_PAGE];
    for bytes in [
        full(&memory).0,
        delta(3, 1, &memory, &[PageRun { first: 2, count: 1 }]).0,
    ] {
        for len in 0..bytes.len() {
            assert!(
                matches!(decode(&bytes[..len]), Err(SnapshotError::Invalid(_))),
                "truncated to {len} of {} bytes",
                bytes.len()
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(SnapshotError::Invalid(_))));
    }
}

#[test]
fn every_bit_flip_outside_memory_is_invalid_and_some_inside() {
    let memory = vec![0x3c; WASM_PAGE];
    let runs = [PageRun { first: 3, count: 2 }];
    for (bytes, bulk) in [
        (full(&memory).0, memory.len()),
        (delta(3, 1, &memory, &runs).0, 2 * PAGE),
    ] {
        let meta_end = bytes.len() - bulk;
        let positions = (0..meta_end).chain((meta_end..bytes.len()).step_by(997));
        for at in positions {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[at] ^= 1 << bit;
                assert!(
                    matches!(decode(&flipped), Err(SnapshotError::Invalid(_))),
                    "bit {bit} of byte {at} flipped"
                );
            }
        }
    }
}

/// Large memories are copied and hashed by two threads: same result, same checks.
#[test]
fn large_memory_round_trips_and_detects_flips_in_either_half() {
    let memory: Vec<u8> = (0..(8 << 20) + 3 * WASM_PAGE)
        .map(|i| (i % 253) as u8)
        .collect();
    let (bytes, _) = full(&memory);
    assert_eq!(
        decode(&bytes).unwrap().memory,
        Some(MemoryState::Whole(&memory[..]))
    );
    for at in [
        bytes.len() - memory.len() + 5,
        bytes.len() - memory.len() / 3,
        bytes.len() - 1,
    ] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x80;
        assert!(
            matches!(decode(&flipped), Err(SnapshotError::Invalid(_))),
            "flip at {at}"
        );
    }
}

#[test]
fn identical_states_give_identical_snapshots() {
    let memory = sample_memory();
    assert_eq!(full(&memory).0, full(&memory.clone()).0);
    let mut other = memory.clone();
    other[5] ^= 1;
    assert_ne!(full(&memory).1.id, full(&other).1.id);
}

#[test]
fn another_module_is_a_mismatch_not_invalid() {
    let memory = sample_memory();
    let (bytes, _) = full(&memory);
    let snapshot = decode(&bytes).unwrap();
    assert!(matches!(
        snapshot.check_module(&[8; 32]),
        Err(SnapshotError::Mismatch(_))
    ));
}

#[test]
fn other_versions_and_foreign_bytes_are_invalid() {
    let memory = sample_memory();
    let (mut bytes, _) = full(&memory);
    bytes[8] = 4;
    let Err(SnapshotError::Invalid(why)) = decode(&bytes) else {
        panic!("version 4 accepted")
    };
    assert!(why.contains("version 4"), "{why}");
    assert!(matches!(decode(&memory), Err(SnapshotError::Invalid(_))));
}

/// A version-1 snapshot as version 1 wrote it (64-byte header, xxh3-64 over 256 KiB
/// segments), with `sections` after the header.
fn version1(sections: &[u8], memory: &[u8]) -> Vec<u8> {
    let mut bytes = [
        &MAGIC[..],
        &1u32.to_le_bytes(),
        &0u32.to_le_bytes(),
        &[0; 8],
        &[0; 8],
        &MODULE,
    ]
    .concat();
    bytes.extend_from_slice(sections);
    bytes.push(TAG_MEMORY);
    bytes.extend_from_slice(&(memory.len() as u64).to_le_bytes());
    let meta_end = bytes.len();
    bytes.extend_from_slice(memory);
    let len = bytes.len() as u64;
    bytes[24..32].copy_from_slice(&len.to_le_bytes());
    let sum = digest::v1_checksum(&bytes[V1_CHECKSUMMED_FROM..meta_end], memory);
    bytes[16..24].copy_from_slice(&sum.to_le_bytes());
    bytes
}

#[test]
fn version_1_snapshots_are_still_read() {
    let memory: Vec<u8> = (0..SEGMENT + 2 * WASM_PAGE)
        .map(|i| (i / 7) as u8)
        .collect();
    let globals = [
        TAG_GLOBALS,
        13,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        4,
        0,
        0,
        0,
        0,
        0x2a,
        0,
        0,
        0,
    ];
    let bytes = version1(&globals, &memory);
    let snapshot = decode(&bytes).unwrap();
    assert_eq!(
        (
            snapshot.lineage,
            snapshot.sequence,
            snapshot.page_digests.as_ref()
        ),
        (Lineage::Full, 0, None)
    );
    assert_eq!(snapshot.globals, vec![(4, GlobalValue::I32(42))]);
    assert_eq!(snapshot.memory, Some(MemoryState::Whole(&memory[..])));
    assert_eq!(
        snapshot.id,
        u128::from(u64::from_le_bytes(bytes[16..24].try_into().unwrap()))
    );
    let mut flipped = bytes.clone();
    flipped[bytes.len() - 1] ^= 1;
    assert!(matches!(decode(&flipped), Err(SnapshotError::Invalid(_))));
    let mut flagged = bytes.clone();
    flagged[12] = 1;
    assert!(matches!(decode(&flagged), Err(SnapshotError::Invalid(_))));
}

/// Version-2 snapshots (table 0 alone) are still read, full and delta, and say that they
/// hold table 0 only.
#[test]
fn version_2_snapshots_are_still_read() {
    let memory = sample_memory();
    let (v3, _) = full(&memory);
    let v2 = test_support::as_version_2(&v3, None);
    assert_eq!(&v2[8..12], &2u32.to_le_bytes());
    let snapshot = decode(&v2).unwrap();
    assert_eq!(snapshot.tables, vec![(0, TABLE.to_vec())]);
    assert!(!snapshot.every_table);
    assert_eq!(snapshot.globals, GLOBALS.to_vec());
    assert_eq!(snapshot.memory, Some(MemoryState::Whole(&memory[..])));
    assert_eq!(snapshot.lineage, Lineage::Full);
    // A delta following it, and a version-3 delta following it: chains.
    let runs = [PageRun { first: 1, count: 1 }];
    let (d3, _) = delta(snapshot.id, 1, &memory, &runs);
    let d2 = test_support::as_version_2(&d3, Some(snapshot.id));
    let decoded_d2 = decode(&d2).unwrap();
    assert_eq!(
        (decoded_d2.lineage, decoded_d2.every_table),
        (
            Lineage::Delta {
                parent: snapshot.id
            },
            false
        )
    );
    assert_eq!(decoded_d2.tables, vec![(0, TABLE.to_vec())]);
    let decoded_d3 = decode(&d3).unwrap();
    check_chain(&[decode(&v2).unwrap(), decoded_d2]).unwrap();
    check_chain(&[snapshot, decoded_d3]).unwrap();
    // A module without tables: no table section in either version.
    let none = Parts {
        module: &MODULE,
        lineage: Lineage::Full,
        sequence: 0,
        globals: &[],
        tables: &[],
        memory: MemoryParts::None,
    };
    let v2 = test_support::as_version_2(&none.encode(&[]).0, None);
    let snapshot = decode(&v2).unwrap();
    assert!(snapshot.tables.is_empty() && !snapshot.every_table);
}

/// The tables section: what does not add up is invalid, and a version-2 table section
/// never reads as a version-3 one or the reverse (the id does not cover the version).
#[test]
fn tables_sections_that_do_not_add_up_are_invalid() {
    let header = Parts {
        module: &MODULE,
        lineage: Lineage::Full,
        sequence: 0,
        globals: &[],
        tables: &[],
        memory: MemoryParts::None,
    }
    .encode(&[])
    .0;
    let section = |words: &[u32]| {
        let mut s = vec![TAG_TABLE];
        s.extend_from_slice(&(4 * words.len() as u64).to_le_bytes());
        for w in words {
            s.extend_from_slice(&w.to_le_bytes());
        }
        reseal([&header[..], &s].concat())
    };
    let tables = |bytes: &[u8]| decode(bytes).map(|s| s.tables);
    assert_eq!(
        tables(&section(&[2, 0, 1, 5, 4, 0])),
        Ok(vec![(0, vec![Some(5)]), (4, vec![])])
    );
    for words in [
        &[0][..],              // no tables: then no section
        &[1, 0, 2, 5][..],     // an entry missing
        &[1, 0, 1, 5, 9][..],  // a trailing word
        &[2, 3, 0, 3, 0][..],  // the same index twice
        &[2, 3, 0, 1, 0][..],  // indices descending
        &[1, 0, u32::MAX][..], // a size beyond the section
        &[u32::MAX, 0, 0][..], // a count beyond the section
    ] {
        assert!(
            matches!(decode(&section(words)), Err(SnapshotError::Invalid(_))),
            "{words:?}"
        );
    }
    // The version flipped between 2 and 3: invalid, whatever the tables.
    let memory = vec![1; WASM_PAGE];
    for tables in [
        &TABLES[..],
        &TABLES[..1],
        &[(0, &[][..])][..],
        &[(1, &[][..])][..],
    ] {
        let v3 = Parts {
            module: &MODULE,
            lineage: Lineage::Full,
            sequence: 0,
            globals: &GLOBALS,
            tables,
            memory: MemoryParts::Whole { len: memory.len() },
        }
        .encode(&memory)
        .0;
        let mut as_2 = v3.clone();
        as_2[8] = 2;
        assert!(decode(&as_2).is_err(), "{tables:?} as version 2");
        let mut as_3 = test_support::as_version_2(&v3, None);
        if tables[0].0 == 0 {
            as_3[8] = 3;
            assert!(decode(&as_3).is_err(), "{tables:?} as version 3");
        }
    }
}

/// Seals `bytes` (version 2), whose last `bulk` bytes are its bulk, with a correct
/// length and id, whatever its structure.
fn reseal_with_bulk(mut bytes: Vec<u8>, bulk: usize) -> Vec<u8> {
    let len = bytes.len() as u64;
    bytes[32..40].copy_from_slice(&len.to_le_bytes());
    let meta_end = bytes.len() - bulk;
    let id = digest::id(
        &bytes[IDENTIFIED_FROM..meta_end],
        &digest::page_digests(&bytes[meta_end..]),
    );
    bytes[16..32].copy_from_slice(&id.to_le_bytes());
    bytes
}

fn reseal(bytes: Vec<u8>) -> Vec<u8> {
    reseal_with_bulk(bytes, 0)
}

/// A well-formed snapshot (valid checksum) with a bad structure is still refused.
#[test]
fn structurally_bad_snapshots_with_good_checksums_are_invalid() {
    let empty = |lineage| Parts {
        module: &MODULE,
        lineage,
        sequence: 0,
        globals: &[],
        tables: &[],
        memory: MemoryParts::None,
    };
    let header = empty(Lineage::Full).encode(&[]).0;
    let with = |extra: &[u8]| reseal([&header[..], extra].concat());
    // memory not a whole number of pages
    assert!(decode(&with(&[TAG_MEMORY, 3, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3])).is_err());
    // unknown section
    assert!(decode(&with(&[9, 0, 0, 0, 0, 0, 0, 0, 0])).is_err());
    // globals section again (out of order)
    assert!(decode(&with(&[TAG_GLOBALS, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])).is_err());
    // table whose size disagrees with its length
    assert!(decode(&with(&[TAG_TABLE, 4, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0])).is_err());
    // a section longer than the input
    assert!(decode(&with(&[
        TAG_TABLE, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
    ]))
    .is_err());
    // a delta's sections in a full snapshot
    assert!(decode(&with(&[TAG_PAGES, 0, 0, 0, 0, 0, 0, 0, 0])).is_err());
    // unknown kind
    let mut kind = header.clone();
    kind[12] = 2;
    assert!(decode(&reseal(kind)).is_err());
    // a full snapshot with a parent
    let mut parented = header.clone();
    parented[72] = 1;
    assert!(decode(&reseal(parented)).is_err());
    assert!(decode(&reseal(header)).is_ok());

    let delta_header = empty(Lineage::Delta { parent: 1 }).encode(&[]).0;
    let with =
        |extra: &[u8], bulk: usize| reseal_with_bulk([&delta_header[..], extra].concat(), bulk);
    let changed = |len: u64, runs: &[(u32, u32)]| {
        let mut s = vec![TAG_CHANGED];
        s.extend_from_slice(&(12 + 8 * runs.len() as u64).to_le_bytes());
        s.extend_from_slice(&len.to_le_bytes());
        s.extend_from_slice(&(runs.len() as u32).to_le_bytes());
        for (first, count) in runs {
            s.extend_from_slice(&first.to_le_bytes());
            s.extend_from_slice(&count.to_le_bytes());
        }
        s
    };
    let pages = |n: usize| {
        [
            &[TAG_PAGES][..],
            &((n * PAGE) as u64).to_le_bytes(),
            &vec![0; n * PAGE],
        ]
        .concat()
    };
    let page64k = WASM_PAGE as u64;
    assert!(decode(&with(
        &[changed(page64k, &[(1, 2)]), pages(2)].concat(),
        2 * PAGE
    ))
    .is_ok());
    // runs out of order, overlapping, empty, beyond memory, pages missing or too many
    assert!(decode(&with(
        &[changed(page64k, &[(4, 1), (2, 1)]), pages(2)].concat(),
        2 * PAGE
    ))
    .is_err());
    assert!(decode(&with(
        &[changed(page64k, &[(2, 2), (3, 1)]), pages(3)].concat(),
        3 * PAGE
    ))
    .is_err());
    assert!(decode(&with(&[changed(page64k, &[(2, 0)]), pages(0)].concat(), 0)).is_err());
    assert!(decode(&with(
        &[changed(page64k, &[(15, 2)]), pages(2)].concat(),
        2 * PAGE
    ))
    .is_err());
    assert!(decode(&with(
        &[changed(page64k, &[(1, 2)]), pages(1)].concat(),
        PAGE
    ))
    .is_err());
    assert!(decode(&with(&changed(page64k, &[]), 0)).is_err());
    // memory size not whole pages
    assert!(decode(&with(&[changed(100, &[]), pages(0)].concat(), 0)).is_err());
    // a full memory in a delta
    assert!(decode(&with(&[TAG_MEMORY, 0, 0, 0, 0, 0, 0, 0, 0], 0)).is_err());
}

/// Encoding into a fresh mapping, whose pages are not resident yet (so each segment is
/// populated before it is written), gives the same bytes as encoding into a buffer.
#[cfg(target_os = "linux")]
#[test]
fn encoding_into_a_fresh_mapping_gives_the_same_bytes() {
    let len = 32usize << 20;
    let memory: Vec<u8> = (0..len).map(|i| ((i >> 12) ^ i) as u8).collect();
    let parts = Parts {
        module: &MODULE,
        lineage: Lineage::Full,
        sequence: 0,
        globals: &[],
        tables: &[],
        memory: MemoryParts::Whole { len },
    };
    let total = parts.encoded_len();
    let mut buffer = vec![0xAAu8; total];
    parts.encode_into(&mut buffer, &memory);
    let mut fresh = FreshMapping::new(total);
    parts.encode_into(fresh.bytes(), &memory);
    assert!(fresh.bytes() == &buffer[..]);
    assert!(decode(&buffer).is_ok());
}

/// A raw copy into a fresh mapping (populated segment by segment, by two threads past
/// 8 MiB) and into a resident buffer, of lengths that end inside a page, a segment and the
/// second thread's half, gives back the source.
#[cfg(target_os = "linux")]
#[test]
fn copy_out_copies_every_byte_fresh_or_resident() {
    for len in [0, 100, PAGE + 1, SEGMENT + 3, (9 << 20) + 17] {
        let src: Vec<u8> = (0..len).map(|i| ((i >> 12) ^ i) as u8).collect();
        let mut resident = vec![0xAAu8; len];
        copy_out(&mut resident, &src);
        assert!(resident == src, "resident, {len} bytes");
        if len == 0 {
            continue;
        }
        let mut fresh = FreshMapping::new(len);
        copy_out(fresh.bytes(), &src);
        assert!(fresh.bytes() == &src[..], "fresh, {len} bytes");
    }
}

mod chains {
    use super::*;

    fn memory_of(pages: usize, fill: u8) -> Vec<u8> {
        vec![fill; pages * PAGE]
    }

    #[test]
    fn a_full_snapshot_and_its_deltas_in_order_is_a_chain() {
        let memory = memory_of(16, 1);
        let (f, fe) = full(&memory);
        let mut grown = memory.clone();
        grown.extend(memory_of(16, 0));
        grown[3 * PAGE] = 9;
        grown[20 * PAGE] = 8;
        let runs = [
            PageRun { first: 3, count: 1 },
            PageRun {
                first: 16,
                count: 16,
            },
        ];
        let (d1, d1e) = delta(fe.id, 1, &grown, &runs);
        let (d2, _) = delta(d1e.id, 2, &grown, &[]);
        let decoded: Vec<Snapshot> = [&f, &d1, &d2].iter().map(|b| decode(b).unwrap()).collect();
        check_chain(&decoded).unwrap();
        check_chain(&decoded[..1]).unwrap();
        // The digests of the memory the chain describes, zero-extended.
        let digests = chain_digests(&decoded, grown.len() + 2 * WASM_PAGE).unwrap();
        let mut expected = grown.clone();
        expected.extend(vec![0; 2 * WASM_PAGE]);
        assert_eq!(
            digests,
            expected.chunks(PAGE).map(page_digest).collect::<Vec<_>>()
        );
    }

    fn refused(chain: &[&Vec<u8>]) -> String {
        let decoded: Vec<Snapshot> = chain.iter().map(|b| decode(b).unwrap()).collect();
        match check_chain(&decoded) {
            Err(SnapshotError::Invalid(why)) => why,
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn deltas_without_their_base_or_out_of_order_are_refused() {
        let memory = memory_of(16, 1);
        let (f, fe) = full(&memory);
        let (d1, d1e) = delta(fe.id, 1, &memory, &[PageRun { first: 1, count: 1 }]);
        let (d2, _) = delta(d1e.id, 2, &memory, &[PageRun { first: 2, count: 1 }]);
        let (f2, _) = full(&memory_of(16, 2));
        assert!(refused(&[&d1]).contains("without the snapshots it follows"));
        assert!(refused(&[&d1, &d2]).contains("without"));
        assert!(refused(&[&f, &d2]).contains("does not follow"));
        assert!(refused(&[&f, &d2, &d1]).contains("does not follow"));
        assert!(refused(&[&f, &d1, &d1]).contains("does not follow"));
        assert!(refused(&[&f2, &d1]).contains("does not follow"));
        assert!(refused(&[&f, &f2]).contains("full snapshot"));
        assert!(check_chain(&[]).is_err());
    }

    #[test]
    fn memory_may_not_shrink_or_vanish_along_a_chain() {
        let (f, fe) = full(&memory_of(32, 1));
        let (d, _) = delta(fe.id, 1, &memory_of(16, 1), &[]);
        assert!(refused(&[&f, &d]).contains("less memory"));
        let no_memory = Parts {
            module: &MODULE,
            lineage: Lineage::Delta { parent: fe.id },
            sequence: 1,
            globals: &[],
            tables: &[],
            memory: MemoryParts::None,
        }
        .encode(&[])
        .0;
        assert!(refused(&[&f, &no_memory]).contains("present in only some"));
    }
}
