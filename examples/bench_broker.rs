//! Benchmark helper: serves librdkafka's mock broker on 127.0.0.1 with one topic loaded from a
//! JSON-lines file, prints `ready <bootstrap>` and keeps serving until stdin closes.
//!
//! usage: bench_broker EVENTS.jsonl TOPIC PARTITIONS

use std::io::{BufRead, Read};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: bench_broker EVENTS.jsonl TOPIC PARTITIONS");
        std::process::exit(2);
    }
    let (path, topic) = (&args[1], &args[2]);
    let partitions: i32 = args[3].parse().expect("PARTITIONS is a number");
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(topic, partitions, 1).expect("topic");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .expect("producer");
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("events file"));
    let mut n = 0u64;
    for line in file.lines() {
        let line = line.expect("read events");
        let p = (n % partitions as u64) as i32;
        loop {
            match producer.send(BaseRecord::<(), str>::to(topic).partition(p).payload(&line)) {
                Ok(()) => break,
                Err(_) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        n += 1;
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    println!("ready {} {n}", cluster.bootstrap_servers());
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}
