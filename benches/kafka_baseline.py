#!/usr/bin/env python3
"""Python baseline for the Kafka benchmark: a confluent-kafka consumer reads every partition of
a topic to its high watermark and writes Parquet (zstd) with pyarrow in batches of 100k rows.

usage: kafka_baseline.py BOOTSTRAP TOPIC OUT.parquet
"""
import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Consumer, TopicPartition

bootstrap, topic, out = sys.argv[1:4]
schema = pa.schema([
    ("ts", pa.string()), ("host", pa.string()), ("method", pa.string()), ("path", pa.string()),
    ("status", pa.int32()), ("bytes", pa.int64()), ("latency_ms", pa.float64()),
    ("client_ip", pa.string()), ("user_agent", pa.string()), ("region", pa.string()),
    ("user_id", pa.int64()), ("cache_hit", pa.bool_()), ("trace_id", pa.string())])
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "py-baseline",
              "enable.auto.commit": False, "fetch.wait.max.ms": 10})
md = c.list_topics(topic, timeout=10)
parts = sorted(md.topics[topic].partitions)
total = 0
for p in parts:
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
    total += hi - lo
c.assign([TopicPartition(topic, p, 0) for p in parts])
writer = None
rows, n = [], 0
while n < total:
    for m in c.consume(num_messages=10000, timeout=0.5):
        if m.error():
            continue
        rows.append(json.loads(m.value()))
        n += 1
    if len(rows) >= 100_000 or (n >= total and rows):
        ts = pa.Table.from_pylist(rows, schema=schema)
        ts = ts.set_column(0, "ts", ts.column("ts").cast(pa.timestamp("ms", tz="UTC")))
        if writer is None:
            writer = pq.ParquetWriter(out, ts.schema, compression="zstd")
        writer.write_table(ts)
        rows = []
writer.close()
print(n)
