//! A group member whose start its checks refuse (here a schema the files already written
//! cannot follow) never joins its group. It joined as its source opened, before the checks,
//! and left as it failed: every live member gave up its partitions for nothing, once per
//! restart of the refused process. A Kafka-protocol proxy in front of tansu counts the
//! JoinGroup requests.

use crate::helpers::*;
use crate::kafka::{job_full, produce_events, spawn_run, wait_for};
use crate::kafka_proxy::JOIN_GROUP;

#[test]
fn tansu_a_start_its_checks_refuse_does_not_join_the_group() {
    let Some((broker, seen, bootstrap)) = crate::kafka_proxy::tansu_behind() else {
        return;
    };
    broker.create_topic("checked", 2);
    produce_events(&bootstrap, "checked", 0, 20, 2, None);
    let dir = tempfile::tempdir().unwrap();
    let schema_file = dir.path().join("schema.toml");
    std::fs::copy(schema("nginx_access"), &schema_file).unwrap();
    let options = "\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"";
    let job = job_full(dir.path(), &bootstrap, "checked", options, &schema_file);
    let out = dir.path().join("out");
    let first = spawn_run(&job, &dir.path().join("first.log"));
    wait_for(&out, 20, 90);
    sigterm(&first);
    assert!(first.wait_with_output().unwrap().status.success());
    let joins = seen.count(JOIN_GROUP);
    assert!(
        joins >= 1,
        "the first run joined its group through the proxy"
    );

    // `bytes` was int64 in the files written; a string now is refused at the start.
    let text = std::fs::read_to_string(&schema_file).unwrap();
    let retyped = text.replacen(
        "name = \"bytes\"\ntype = \"int64\"",
        "name = \"bytes\"\ntype = \"string\"",
        1,
    );
    assert_ne!(retyped, text, "the schema's `bytes` field was retyped");
    std::fs::write(&schema_file, retyped).unwrap();
    let (status, log) = sluice_within(&["run", job.to_str().unwrap()], 60);
    assert!(!status.success(), "{log}");
    assert!(log.contains("in the files already written"), "{log}");
    assert_eq!(
        seen.count(JOIN_GROUP),
        joins,
        "the refused start joined the group:\n{log}"
    );
}
