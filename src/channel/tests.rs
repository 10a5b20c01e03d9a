//! Channel and spill tests.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use proptest::prelude::*;

use super::*;
use crate::decode::Position;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("n", DataType::Int64, false),
        Field::new("s", DataType::Utf8, true),
    ]))
}

fn item(partition: u32, n: i64, rows: usize) -> Item {
    let values: Vec<i64> = (0..rows as i64).map(|i| n * 1000 + i).collect();
    let strings: Vec<Option<String>> = (0..rows)
        .map(|i| (i % 3 != 0).then(|| format!("v{n}-{i}")))
        .collect();
    Item {
        batch: RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(values)),
                Arc::new(StringArray::from(strings)),
            ],
        )
        .unwrap(),
        dead: if n % 2 == 0 {
            vec![DeadLetter {
                position: Position {
                    line: n as u64,
                    offset: n as u64 * 10,
                },
                reason: "bad".into(),
                record: vec![0xff, b'x'],
            }]
        } else {
            vec![]
        },
        prov: Provenance {
            partition,
            from_offset: n as u64 * 100,
            first_offset: n as u64 * 100,
            last_offset: n as u64 * 100 + 99,
            next_offset: n as u64 * 100 + 100,
            next_line: n as u64 + 1,
            epoch: 0,
            mark: None,
        },
        records: rows as u64,
    }
}

fn firsts(take: &Take<'_>) -> Vec<u64> {
    take.items().map(|i| i.prov.first_offset).collect()
}

#[test]
fn a_take_dropped_uncommitted_returns_its_items_to_the_head_in_order() {
    let ch = Channel::new(1, 1 << 30, 100);
    for n in 0..5 {
        ch.put(item(0, n, 4)).unwrap();
    }
    let t = ch.take(0, 3, Duration::ZERO);
    assert_eq!(firsts(&t), vec![0, 100, 200]);
    drop(t);
    let t = ch.take(0, 10, Duration::ZERO);
    assert_eq!(firsts(&t), vec![0, 100, 200, 300, 400]);
    drop(t);
    assert_eq!(ch.usage().1, 5);
    let t = ch.take(0, 10, Duration::ZERO);
    t.commit();
    assert_eq!(ch.usage(), (0, 0));
}

/// A put waiting for room goes in past the bound once a stop comes (nobody takes during a
/// stop: what the channel holds is spilled).
#[test]
fn a_put_waiting_for_room_goes_in_once_a_stop_comes() {
    let bound = item(0, 1, 100).size();
    let ch = Arc::new(Channel::new(1, bound, 100));
    ch.put(item(0, 1, 100)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (c2, s2) = (ch.clone(), stop.clone());
    let h = std::thread::spawn(move || {
        c2.put_unless(item(0, 2, 100), || s2.load(Ordering::SeqCst))
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(!h.is_finished(), "the put waits while the channel is full");
    stop.store(true, Ordering::SeqCst);
    h.join().unwrap();
    assert_eq!(ch.drain_all(|_| 0).len(), 2);
}

#[test]
fn commit_frees_room_for_a_waiting_put() {
    let bound = item(0, 1, 100).size() + item(0, 2, 100).size();
    let ch = Arc::new(Channel::new(1, bound, 100));
    ch.put(item(0, 1, 100)).unwrap();
    ch.put(item(0, 2, 100)).unwrap();
    assert_eq!(ch.try_put_all(vec![item(0, 3, 100)]), Err(PutError::Full));
    let done = Arc::new(AtomicBool::new(false));
    let (c2, d2) = (ch.clone(), done.clone());
    let h = std::thread::spawn(move || {
        c2.put(item(0, 3, 100)).unwrap();
        d2.store(true, Ordering::SeqCst);
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !done.load(Ordering::SeqCst),
        "put waits while the channel is full"
    );
    let t = ch.take(0, 1, Duration::ZERO);
    std::thread::sleep(Duration::from_millis(50));
    assert!(!done.load(Ordering::SeqCst), "items in flight still count");
    t.commit();
    h.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
}

#[test]
fn lanes_keep_partitions_apart_and_purge_drops_stale_epochs() {
    let ch = Channel::new(2, 1 << 30, 100);
    ch.put(item(0, 1, 1)).unwrap();
    ch.put(item(1, 2, 1)).unwrap();
    ch.put(item(2, 3, 1)).unwrap();
    assert_eq!(firsts(&ch.take(1, 10, Duration::ZERO)), vec![200]);
    assert_eq!(ch.purge(2, 1), 1);
    let t = ch.take(0, 10, Duration::ZERO);
    assert_eq!(firsts(&t), vec![100]);
    t.commit();
    assert_eq!(ch.usage().1, 1, "the lane-1 take was rolled back on drop");
}

/// An item of an epoch its partition's rewind left behind, put after the purge (a chunk
/// decoding while the worker rewound), is not drained for the spill: spilled ahead of the
/// replay's items, it stood where the partition resumes, and a memory log's restore took the
/// gap for lost records.
#[test]
fn a_stop_drains_no_stale_item() {
    let ch = Channel::new(1, 1 << 30, 100);
    let mut stale = item(0, 3, 1);
    stale.prov.epoch = 0;
    ch.put(stale).unwrap();
    for n in [1, 2] {
        let mut fresh = item(0, n, 1);
        fresh.prov.epoch = 1;
        ch.put(fresh).unwrap();
    }
    let drained = ch.drain_all(|p| u64::from(p == 0));
    let firsts: Vec<u64> = drained.iter().map(|i| i.prov.first_offset).collect();
    assert_eq!(firsts, vec![100, 200]);
    assert_eq!(ch.usage(), (0, 0), "the stale item's room is freed too");
}

#[test]
fn a_huge_item_enters_an_empty_channel() {
    let ch = Channel::new(1, 10, 1);
    ch.put(item(0, 1, 1000)).unwrap();
    assert_eq!(ch.try_put_all(vec![item(0, 2, 1)]), Err(PutError::Full));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Under concurrent puts and takes (with random commits and dropped takes) the bound holds,
    /// nothing is lost and each partition's items come out in order exactly once.
    #[test]
    fn bound_holds_under_concurrency(
        sizes in proptest::collection::vec(1usize..40, 20..80),
        max_items in 2usize..6,
        drop_every in 2usize..5,
    ) {
        let unit = item(0, 0, 20).size();
        let max_bytes = unit * 3;
        let ch = Arc::new(Channel::new(2, max_bytes, max_items));
        let over = Arc::new(AtomicUsize::new(0));
        let total = sizes.len();
        let producers: Vec<_> = (0..2u32).map(|p| {
            let ch = ch.clone();
            let sizes = sizes.clone();
            std::thread::spawn(move || {
                for (n, rows) in sizes.iter().enumerate() {
                    ch.put(item(p, n as i64, *rows)).unwrap();
                }
            })
        }).collect();
        let consumers: Vec<_> = (0..2usize).map(|lane| {
            let ch = ch.clone();
            let over = over.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut round = 0;
                while seen.len() < total {
                    let t = ch.take(lane, 2, Duration::from_millis(20));
                    let (bytes, items) = ch.usage();
                    if items > max_items || (items > 1 && bytes > max_bytes) {
                        over.fetch_add(1, Ordering::SeqCst);
                    }
                    round += 1;
                    if round % drop_every == 0 {
                        drop(t);
                        continue;
                    }
                    seen.extend(t.items().map(|i| i.prov.first_offset / 100));
                    t.commit();
                }
                seen
            })
        }).collect();
        for p in producers { p.join().unwrap(); }
        for c in consumers {
            let seen = c.join().unwrap();
            prop_assert_eq!(seen, (0..total as u64).collect::<Vec<_>>());
        }
        prop_assert_eq!(over.load(Ordering::SeqCst), 0);
        prop_assert_eq!(ch.usage(), (0, 0));
    }
}

fn owner() -> spill::SpillOwner {
    spill::SpillOwner {
        job: "j".into(),
        url: "file:///out".into(),
        stages: None,
    }
}

fn meta(log: Option<String>) -> spill::SpillMeta {
    spill::SpillMeta {
        owner: owner(),
        logs: log.into_iter().collect(),
        restored: false,
    }
}

#[test]
fn spill_round_trips_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<Item> = (0..6)
        .map(|n| item(n % 3, n as i64, (n as usize) * 7 % 5))
        .collect();
    assert!(!spill::exists(dir.path()));
    let log = Some("log-a".to_string());
    spill::write(
        dir.path(),
        &schema(),
        &items,
        |p| Some(format!("t-{p}")),
        &meta(log),
    )
    .unwrap();
    assert!(spill::exists(dir.path()));
    let head = spill::header(dir.path()).unwrap();
    assert_eq!(
        (head.owner, head.logs),
        (Some(owner()), vec!["log-a".into()])
    );
    let back = spill::read(dir.path(), &schema()).unwrap();
    assert_eq!(back.head.logs, ["log-a"]);
    assert_eq!(back.items.len(), items.len());
    for (a, (key, b)) in items.iter().zip(&back.items) {
        assert_eq!(
            key.as_deref(),
            Some(format!("t-{}", a.prov.partition).as_str())
        );
        assert_eq!(a.batch, b.batch);
        assert_eq!(a.dead, b.dead);
        assert_eq!(a.prov, b.prov);
    }
    // A restore records the positions it restores with and its log; the data stays.
    let provs: Vec<_> = items
        .iter()
        .map(|i| Provenance {
            from_offset: i.prov.from_offset + 1000,
            next_offset: i.prov.next_offset + 1000,
            ..i.prov
        })
        .collect();
    spill::record(dir.path(), &provs, vec!["log-a".into(), "log-b".into()]).unwrap();
    let again = spill::read(dir.path(), &schema()).unwrap();
    assert_eq!(again.head.logs, ["log-a", "log-b"]);
    assert!(again.head.restored, "a restore marks the spill restored");
    for ((p, (_, b)), (_, a)) in provs.iter().zip(&again.items).zip(&back.items) {
        assert_eq!(*p, b.prov);
        assert_eq!(a.batch, b.batch);
        assert_eq!(a.dead, b.dead);
    }
    // A spill written over it replaces it whole: its own data, one data file left.
    spill::write(
        dir.path(),
        &schema(),
        &items[..2],
        |p| Some(format!("t-{p}")),
        &meta(None),
    )
    .unwrap();
    assert_eq!(spill::read(dir.path(), &schema()).unwrap().items.len(), 2);
    assert_eq!(arrow_files(dir.path()).len(), 1);
    spill::remove(dir.path()).unwrap();
    assert!(!spill::exists(dir.path()));
}

fn arrow_files(state: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(state.join("spill"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "arrow"))
        .collect()
}

#[test]
fn corrupt_or_truncated_spill_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<Item> = (0..4).map(|n| item(0, n, 50)).collect();
    spill::write(
        dir.path(),
        &schema(),
        &items,
        |p| Some(format!("t-{p}")),
        &meta(None),
    )
    .unwrap();
    let data = arrow_files(dir.path()).pop().expect("a data file");
    let bytes = std::fs::read(&data).unwrap();

    std::fs::write(&data, &bytes[..bytes.len() - 10]).unwrap();
    let e = spill::read(dir.path(), &schema()).unwrap_err().to_string();
    assert!(e.contains(".arrow") && e.contains("truncated"), "{e}");

    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x40;
    std::fs::write(&data, &flipped).unwrap();
    let e = spill::read(dir.path(), &schema()).unwrap_err().to_string();
    assert!(e.contains("checksum"), "{e}");

    std::fs::write(&data, &bytes).unwrap();
    std::fs::write(dir.path().join("spill/manifest.json"), b"{not json").unwrap();
    let e = spill::read(dir.path(), &schema()).unwrap_err().to_string();
    assert!(
        e.contains("manifest.json") && e.contains("--discard-spill"),
        "{e}"
    );
}

/// A spill of format version 1 (data in `data.arrow`, no owner, no `restored` flag) is still
/// read, and counts as restored when a start added its log to it.
#[test]
fn a_version_1_spill_is_read_and_its_restores_counted() {
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<Item> = (0..3).map(|n| item(0, n, 20)).collect();
    spill::write(dir.path(), &schema(), &items, |_| None, &meta(None)).unwrap();
    let data = arrow_files(dir.path()).pop().unwrap();
    std::fs::rename(&data, dir.path().join("spill/data.arrow")).unwrap();
    let m_path = dir.path().join("spill/manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&m_path).unwrap()).unwrap();
    let o = m.as_object_mut().unwrap();
    o.insert("version".into(), 1.into());
    o.insert("logs".into(), serde_json::json!(["a", "a2"]));
    for k in ["owner", "data", "restored"] {
        o.remove(k);
    }
    std::fs::write(&m_path, serde_json::to_vec(&m).unwrap()).unwrap();
    let back = spill::read(dir.path(), &schema()).unwrap();
    assert_eq!(back.items.len(), 3);
    assert!(
        back.head.restored,
        "two logs in a version 1 spill: a start restored it"
    );
    assert!(spill::header(dir.path()).unwrap().owner.is_none());
}

/// A spill whose batches the current output cannot take (a stage added a column no older
/// batch has, which may not be null) is refused as such, not called damaged with the advice
/// that its data is still in the source (a memory push log's is not).
#[test]
fn a_spill_the_output_cannot_take_is_refused_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let items = vec![item(0, 1, 3)];
    spill::write(
        dir.path(),
        &schema(),
        &items,
        |_| Some("t-0".into()),
        &meta(None),
    )
    .unwrap();
    let wider = Arc::new(Schema::new(vec![
        Field::new("n", DataType::Int64, false),
        Field::new("s", DataType::Utf8, true),
        Field::new("src", DataType::Utf8, false),
    ]));
    let e = spill::read(dir.path(), &wider).unwrap_err().to_string();
    assert!(
        e.contains("cannot take")
            && e.contains("`src` is new and not nullable")
            && e.contains("are lost"),
        "{e}"
    );
    assert!(!e.contains("is damaged"), "{e}");
}
