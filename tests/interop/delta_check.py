"""Reads a Delta table three ways and reports what each reader sees, as JSON on stdout.

- replay: the table's `_delta_log` replayed by hand (plain JSON for the commits, pyarrow for a
  checkpoint's Parquet; no Delta library): the live files are the added minus the removed
  ones, each must exist, and their rows are read with pyarrow;
- deltalake: the delta-rs Python package;
- polars: `polars.read_delta`.

Usage: delta_check.py TABLE_URI COLUMN [LOCAL_COPY]
TABLE_URI is read by deltalake and polars (storage options as JSON in DELTA_STORAGE_OPTIONS);
the replay reads LOCAL_COPY (a folder holding the table), or TABLE_URI when it is a folder.
For each reader: rows, distinct values of COLUMN, and whether all readers saw the same values.
"""

import collections
import json
import os
import sys
import time
import urllib.parse

import pyarrow.parquet as pq


def log_state(log):
    """The newest checkpoint's version (-1: none), its files, and the versions after it.

    `_last_checkpoint` is read before the folder is listed: a writer puts the checkpoint before
    it names it there, so the listing holds what it names. A listing is not a snapshot,
    though: with a writer beside this reader, a version made during it can be listed without
    the one before it. So a listing that shows a gap or misses the checkpoint is taken again,
    a few times, before the log is called broken."""
    last = os.path.join(log, "_last_checkpoint")
    for attempt in range(6):
        start = -1
        if os.path.exists(last):
            with open(last) as f:
                start = json.load(f)["version"]
        names = sorted(os.listdir(log))
        parts = [n for n in names if n.startswith("%020d.checkpoint" % start) and n.endswith(".parquet")]
        versions = sorted(int(n[:20]) for n in names if n.endswith(".json") and len(n) == 25 and n[:20].isdigit() and int(n[:20]) > start)
        whole = versions == list(range(start + 1, start + 1 + len(versions)))
        if (start < 0 or parts) and whole:
            break
        time.sleep(0.2)
    assert start < 0 or parts, "_last_checkpoint names version %d but no checkpoint file exists" % start
    assert whole, "a gap in the log: %r" % versions
    return start, parts, versions


def replay(root):
    log = os.path.join(root, "_delta_log")
    live = {}
    txn = {}
    start, parts, versions = log_state(log)
    if start >= 0:
        for p in parts:
            t = pq.read_table(os.path.join(log, p))
            for a in t.column("add").to_pylist():
                if a is not None:
                    live[a["path"]] = a
            if "txn" in t.column_names:
                for x in t.column("txn").to_pylist():
                    if x is not None:
                        txn[x["appId"]] = x["version"]
    for v in versions:
        with open(os.path.join(log, "%020d.json" % v)) as f:
            for line in f:
                if not line.strip():
                    continue
                action = json.loads(line)
                if "add" in action:
                    live[action["add"]["path"]] = action["add"]
                elif "remove" in action:
                    live.pop(action["remove"]["path"], None)
                elif "txn" in action:
                    txn[action["txn"]["appId"]] = action["txn"]["version"]
    files = [urllib.parse.unquote(p) for p in live]
    missing = [p for p in files if not os.path.exists(os.path.join(root, p))]
    assert not missing, "live files that do not exist: %r" % missing[:5]
    on_disk = set()
    for d, _, fs in os.walk(root):
        rel = os.path.relpath(d, root)
        if rel.split(os.sep)[0].startswith(("_", ".")):
            continue
        for f in fs:
            if f.endswith(".parquet") and not f.startswith("."):
                on_disk.add(os.path.normpath(os.path.join(rel, f)))
    orphans = sorted(on_disk - {os.path.normpath(p) for p in files})
    values = []
    for p in files:
        values.extend(pq.read_table(os.path.join(root, p), columns=[COLUMN]).column(0).to_pylist())
    return values, {"version": versions[-1] if versions else start, "live_files": len(files),
                    "orphans": len(orphans), "txn": txn}


def summary(values):
    c = collections.Counter(values)
    return {"rows": len(values), "distinct": len(c), "duplicated": sum(1 for v in c.values() if v > 1)}


uri, COLUMN = sys.argv[1], sys.argv[2]
local = sys.argv[3] if len(sys.argv) > 3 else uri
opts = json.loads(os.environ.get("DELTA_STORAGE_OPTIONS") or "{}") or None

out = {}
seen = {}
vals, info = replay(local)
out["replay"] = dict(summary(vals), **info)
seen["replay"] = collections.Counter(vals)

import deltalake  # noqa: E402

t = deltalake.DeltaTable(uri, storage_options=opts)
vals = t.to_pyarrow_table(columns=[COLUMN]).column(0).to_pylist()
out["deltalake"] = dict(summary(vals), version=t.version())
seen["deltalake"] = collections.Counter(vals)

import polars  # noqa: E402

vals = polars.read_delta(uri, storage_options=opts, columns=[COLUMN]).get_column(COLUMN).to_list()
out["polars"] = summary(vals)
seen["polars"] = collections.Counter(vals)

out["same"] = seen["replay"] == seen["deltalake"] == seen["polars"]
print(json.dumps(out))
