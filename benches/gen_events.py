#!/usr/bin/env python3
"""Generate realistic nginx_access web-log events as JSON lines (deterministic per seed).

usage: gen_events.py COUNT OUT [--seed N]
13 fields, about 320 bytes per event: RFC 3339 timestamp, hosts, methods, paths, status,
bytes, latency, IP, user agent, region, nullable user id, bool, 32-hex trace id.
"""
import argparse
import datetime
import json
import random

HOSTS = [f"{name}.example.com" for name in (
    "www", "api", "cdn", "static", "shop", "blog", "auth", "img", "m", "docs",
    "status", "admin", "pay", "search", "mail", "news", "video", "edge", "assets", "beta")]
METHODS = ["GET"] * 14 + ["POST"] * 4 + ["PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"]
SECTIONS = ["products", "users", "orders", "cart", "search", "static/js", "static/css",
            "images", "api/v1/items", "api/v2/events", "checkout", "account", "help"]
PATHS = [f"/{s}/{i}" for s in SECTIONS for i in range(16)] + ["/", "/health", "/login"]
STATUS = [200] * 80 + [201, 204, 206, 301, 302, 304, 304, 304, 400, 401, 403, 404, 404, 404,
                       429, 500, 502, 503, 504]
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36",
    "curl/8.5.0", "Go-http-client/2.0", "python-requests/2.31.0", "Googlebot/2.1 (+http://www.google.com/bot.html)",
    "okhttp/4.12.0", "PostmanRuntime/7.37.0", "Wget/1.21.4",
]
REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-south-1",
           "ap-northeast-1", "cn-east-1", "sa-east-1"]


def event(rng, t0, i):
    ts = t0 + datetime.timedelta(milliseconds=i * 7 + rng.randrange(7))
    return {
        "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
        "host": rng.choice(HOSTS),
        "method": rng.choice(METHODS),
        "path": rng.choice(PATHS),
        "status": rng.choice(STATUS),
        "bytes": int(rng.lognormvariate(8, 1.5)),
        "latency_ms": round(rng.lognormvariate(3, 1), 3),
        "client_ip": f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        "user_agent": rng.choice(AGENTS),
        "region": rng.choice(REGIONS),
        "user_id": None if rng.random() < 0.3 else rng.randrange(1, 10_000_000),
        "cache_hit": rng.random() < 0.4,
        "trace_id": "%032x" % rng.getrandbits(128),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("count", type=int)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    t0 = datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc)
    with open(a.out, "w", encoding="utf-8") as f:
        for i in range(a.count):
            f.write(json.dumps(event(rng, t0, i), separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
