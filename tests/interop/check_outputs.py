#!/usr/bin/env python3
"""Independent readers for sluice's output: pyarrow and duckdb read every file and compare it
value by value with the input, parsed here with Python's own json module.

usage: check_outputs.py nginx INPUT.jsonl FILE...   (parquet, orc, jsonl[.gz], csv, tsv, txt)
       check_outputs.py orders INPUT.jsonl FILE...  (parquet, jsonl[.gz])
Exits non-zero with a message naming the file, row and column of the first difference.
"""
import base64
import datetime
import decimal
import gzip
import json
import sys

import duckdb
import pyarrow.csv as pacsv
import pyarrow.orc as paorc
import pyarrow.parquet as pq

DB = duckdb.connect()
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
NGINX = ["ts", "host", "method", "path", "status", "bytes", "latency_ms", "client_ip",
         "user_agent", "region", "user_id", "cache_hit", "trace_id"]


def fail(msg):
    print("MISMATCH:", msg)
    sys.exit(1)


def ms_of(v):
    """Milliseconds since the epoch of a datetime or an RFC 3339 string."""
    if v is None:
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        v = datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
    if v.tzinfo is None:
        v = v.replace(tzinfo=datetime.timezone.utc)
    return (v - EPOCH) // datetime.timedelta(milliseconds=1)


def read_input(path):
    rows = []
    with open(path, "rb") as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line.decode("utf-8")))
    return rows


def compare(name, expected, actual, columns, norm):
    if len(expected) != len(actual):
        fail(f"{name}: {len(actual)} rows, expected {len(expected)}")
    for i, (e, a) in enumerate(zip(expected, actual)):
        for c in columns:
            ev, av = norm(c, e.get(c), "expected"), norm(c, a.get(c), "actual")
            if ev != av:
                fail(f"{name}: row {i} column {c}: {av!r} != expected {ev!r}")


# ---------------------------------------------------------------- nginx_access (flat)

def nginx_norm(col, v, _side):
    if v is None:
        return None
    if col == "ts":
        return ms_of(v)
    if col in ("status", "bytes", "user_id"):
        return int(v)
    if col == "latency_ms":
        return float(v)
    if col == "cache_hit":
        if isinstance(v, str):
            return v.lower() == "true"
        return bool(v)
    return str(v)


def check_nginx(inp, files):
    expected = read_input(inp)
    for path in files:
        if path.endswith(".parquet"):
            compare(path + " (pyarrow)", expected, pq.read_table(path).to_pylist(), NGINX,
                    nginx_norm)
            cols = ", ".join("epoch_ms(ts) AS ts" if c == "ts" else c for c in NGINX)
            rel = DB.sql(f"SELECT {cols} FROM read_parquet('{path}')")
            got = [dict(zip(NGINX, r)) for r in rel.fetchall()]
            compare(path + " (duckdb)", expected, got, NGINX, nginx_norm)
            kinds = DB.sql(f"SELECT typeof(ts) FROM read_parquet('{path}') LIMIT 1").fetchall()[0]
            if kinds[0] != "TIMESTAMP WITH TIME ZONE":
                fail(f"{path}: duckdb reads ts as {kinds[0]}, not TIMESTAMP WITH TIME ZONE")
        elif path.endswith(".orc"):
            compare(path + " (pyarrow)", expected, paorc.read_table(path).to_pylist(), NGINX,
                    nginx_norm)
        elif ".jsonl" in path:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as f:
                got = [json.loads(line) for line in f]
            compare(path + " (json)", expected, got, NGINX, nginx_norm)
            rel = DB.sql(f"SELECT * FROM read_json('{path}', format='newline_delimited')")
            got = [dict(zip(rel.columns, r)) for r in rel.fetchall()]
            compare(path + " (duckdb)", expected, got, NGINX, nginx_norm)
        elif path.endswith(".csv") or path.endswith(".tsv"):
            delim = "\t" if path.endswith(".tsv") else ","
            t = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=delim),
                               convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
            compare(path + " (pyarrow)", expected, t.to_pylist(), NGINX, nginx_norm)
            rel = DB.sql(f"SELECT * FROM read_csv('{path}', delim='{delim}', header=true)")
            got = [dict(zip(rel.columns, r)) for r in rel.fetchall()]
            compare(path + " (duckdb)", expected, got, NGINX, nginx_norm)
        elif path.endswith(".txt"):
            with open(inp, "rb") as f:
                want = [l.rstrip(b"\r\n") for l in f if l.strip()]
            with open(path, "rb") as f:
                got = [l.rstrip(b"\n") for l in f]
            if want != got:
                fail(f"{path}: raw lines differ from the input")
        else:
            fail(f"unknown output kind: {path}")
        print(f"ok {path}")


# ---------------------------------------------------------------- orders (nested)

ORDERS = ["order_id", "placed_at", "day", "customer", "items", "tags", "attrs", "total",
          "currency", "signature", "context"]


def dec(v):
    # decimal(12,2) rounds half away from zero, as SQL engines cast (ROUND_HALF_UP here).
    return None if v is None else decimal.Decimal(str(v)).quantize(decimal.Decimal("0.01"),
                                                                    rounding=decimal.ROUND_HALF_UP)


def orders_norm(col, v, side):
    if col == "placed_at":
        if side == "expected":
            return None if v is None else int(v)  # epoch ms in the input
        return ms_of(v)
    if v is None:
        return None
    if col == "day":
        return str(v)
    if col == "customer":
        return {"id": v.get("id"), "name": v.get("name"), "vip": v.get("vip")}
    if col == "items":
        return [{"sku": it.get("sku"), "qty": it.get("qty"), "price": dec(it.get("price"))}
                for it in v]
    if col == "attrs":
        return dict(v) if not isinstance(v, dict) else v
    if col == "total":
        return dec(v)
    if col == "signature":
        if side == "expected":
            return base64.b64decode(v)
        # JSON lines output writes binary as base64, as the field reads it.
        return base64.b64decode(v) if isinstance(v, str) else bytes(v)
    if col == "context":
        # The input holds a JSON value; the output its JSON text.
        return json.loads(v) if side == "actual" else v
    return v


def check_orders(inp, files):
    expected = [r for r in read_input(inp) if r.get("placedAt") is not None
                and r.get("customer", {}).get("id") is not None
                and all(it.get("sku") for it in (r.get("items") or []))]
    for r in expected:
        r["placed_at"] = r.pop("placedAt")
        r.setdefault("currency", "EUR")
        if r.get("currency") is None:
            r["currency"] = "EUR"
    for path in files:
        if path.endswith(".parquet"):
            compare(path + " (pyarrow)", expected, pq.read_table(path).to_pylist(), ORDERS,
                    orders_norm)
            n = DB.sql(f"SELECT count(*), sum(len(items)) FROM read_parquet('{path}')").fetchall()[0]
            want = (len(expected), sum(len(r.get("items") or []) for r in expected if r.get("items") is not None))
            if n != want:
                fail(f"{path} (duckdb): count/items {n} != {want}")
        elif ".jsonl" in path:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as f:
                got = [json.loads(line) for line in f]
            for g in got:
                if isinstance(g.get("attrs"), dict):
                    g["attrs"] = dict(g["attrs"])
            compare(path + " (json)", expected, got, ORDERS, orders_norm)
        else:
            fail(f"unknown output kind: {path}")
        print(f"ok {path}")


def main():
    kind, inp, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    if not files:
        fail("no output files given")
    {"nginx": check_nginx, "orders": check_orders}[kind](inp, files)


if __name__ == "__main__":
    main()
