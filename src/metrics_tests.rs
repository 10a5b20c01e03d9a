//! Tests of the metrics' exposition.

use super::*;

#[test]
fn the_classic_text_names_counter_families_by_their_samples() {
    let m = Metrics::new("web");
    m.records_in("t-0", 3);
    let classic = classic_text(&m.encode());
    assert!(
        classic.contains("# TYPE sluice_records_in_total counter\n"),
        "{classic}"
    );
    assert!(
        classic.contains("# HELP sluice_records_in_total Records"),
        "{classic}"
    );
    assert!(classic.contains(r#"sluice_records_in_total{repo="web",partition="t-0"} 3"#));
    assert!(
        classic.contains("# TYPE sluice_task_state gauge\n"),
        "{classic}"
    );
    assert!(!classic.contains("# EOF"), "{classic}");
    // Counted by window in the alert rules: present at 0 before anything happened.
    for zero in [
        r#"sluice_task_restarts_total{repo="web"} 0"#,
        r#"sluice_sink_retries_total{repo="web"} 0"#,
        r#"sluice_group_rejoins_total{repo="web"} 0"#,
        r#"sluice_commit_seconds_count{repo="web"} 0"#,
    ] {
        assert!(classic.contains(zero), "{zero}: {classic}");
    }
}

#[test]
fn counters_state_and_lag_show_in_the_exposition() {
    let m = Metrics::new("web");
    m.committed(
        "events-0",
        CommitStats {
            rows: 10,
            dead_letters: vec![("malformed", 2), ("type", 1)],
            files: 1,
            bytes: 1234,
            seconds: 0.01,
        },
    );
    m.set_state("running");
    m.paused(true);
    m.lag("events-0", 5, 120);
    m.lag("events-1", 7, 3);
    m.records_in("events-1", 4);
    m.committed(
        "events-1",
        CommitStats {
            rows: 3,
            dead_letters: vec![("type", 1)],
            files: 1,
            bytes: 99,
            seconds: 0.01,
        },
    );
    m.forget("events-1");
    let text = m.encode();
    assert!(
        text.contains(r#"sluice_rows_out_total{repo="web",partition="events-0"} 10"#),
        "{text}"
    );
    assert!(text.contains(r#"sluice_task_state{repo="web",state="running"} 1"#));
    assert!(text.contains(r#"sluice_task_state{repo="web",state="new"} 0"#));
    assert!(
        text.contains(r#"sluice_task_paused{repo="web"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"sluice_consumer_lag{repo="web",partition="events-0"} 5"#));
    assert!(text.contains(r#"sluice_consumer_position{repo="web",partition="events-0"} 120"#));
    assert!(!held_series(&text, "events-1"), "{text}");
    assert!(text.contains("sluice_commit_seconds_count"));
    assert!(text.contains(
        r#"sluice_dead_letters_total{repo="web",partition="events-0",reason="malformed"} 2"#
    ));
    assert!(text
        .contains(r#"sluice_dead_letters_total{repo="web",partition="events-0",reason="type"} 1"#));
    m.pushed(503, 0);
    m.pushed(200, 1000);
    let text = m.encode();
    assert!(
        text.contains(r#"sluice_push_requests_total{repo="web",code="503"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"sluice_push_rows_total{repo="web"} 1000"#),
        "{text}"
    );
}

/// Assignments are counted with their time in the destination, and rejoins apart.
#[test]
fn assignments_and_rejoins_are_counted() {
    let m = Metrics::new("web");
    m.assigned(0.02);
    m.assigned(0.3);
    m.rejoined();
    let text = classic_text(&m.encode());
    for line in [
        "sluice_group_assignments_total{repo=\"web\"} 2",
        "sluice_group_assignment_seconds_count{repo=\"web\"} 2",
        "sluice_group_assignment_seconds_sum{repo=\"web\"} 0.32",
        "sluice_group_rejoins_total{repo=\"web\"} 1",
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
}

/// After a rebalance only the partitions held keep series: one counted again after its
/// revocation (a commit that ended past the deadline) and one of an earlier task go.
#[test]
fn series_of_partitions_not_held_go_at_a_rebalance() {
    let m = Metrics::new("web");
    let stats = || CommitStats {
        rows: 1,
        dead_letters: vec![("type", 1)],
        files: 1,
        bytes: 9,
        seconds: 0.01,
    };
    for p in ["events-0", "events-1", "old-7"] {
        m.records_in(p, 2);
        m.committed(p, stats());
        m.lag(p, 1, 2);
    }
    m.offsets_skipped("old-7", 3);
    m.forget("events-1");
    // Counted again after it was forgotten.
    m.committed("events-1", stats());
    assert!(m.encode().contains(r#"partition="events-1""#));
    let held = ["events-0".to_string()].into_iter().collect();
    m.keep_only(&held);
    let text = m.encode();
    assert!(!held_series(&text, "events-1"), "{text}");
    assert!(!held_series(&text, "old-7"), "{text}");
    // What this process skipped stays counted, whoever holds the partition now.
    assert!(
        text.contains(r#"sluice_offsets_skipped_total{repo="web",partition="old-7"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"sluice_rows_out_total{repo="web",partition="events-0"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"sluice_consumer_lag{repo="web",partition="events-0"} 1"#));
    // Nothing left to forget: the sets are empty of the others.
    assert_eq!(m.seen.lock().unwrap().len(), 1);
}

/// Whether `text` has a series of `partition` other than the skipped offsets (kept when a
/// partition moves).
fn held_series(text: &str, partition: &str) -> bool {
    let label = format!("partition=\"{partition}\"");
    text.lines()
        .any(|l| l.contains(&label) && !l.starts_with("sluice_offsets_skipped_total"))
}
