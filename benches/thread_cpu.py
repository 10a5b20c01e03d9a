#!/usr/bin/env python3
"""Runs a command and reports the CPU seconds of its threads grouped by stage, from the thread
names sluice gives them (read, decode-N, sink-N, tokio-rt-worker, rdk:*), sampled from /proc
every 20 ms. A thread's last 20 ms before it exits can be missed: the split is approximate, the
total is not (it is read from the process's own rusage by the caller).

usage: thread_cpu.py OUT.json -- COMMAND...
"""
import json
import os
import subprocess
import sys
import time

STAGES = [
    ("read", "consume"),
    ("rdk:", "consume"),
    ("decode-", "decode"),
    ("sink-", "encode+commit"),
    ("tokio-rt", "upload"),
    ("encode-", "encode"),
]


def stage(name):
    for prefix, s in STAGES:
        if name.startswith(prefix):
            return s
    return "other"


def main():
    out, cmd = sys.argv[1], sys.argv[sys.argv.index("--") + 1 :]
    tick = os.sysconf("SC_CLK_TCK")
    proc = subprocess.Popen(cmd)
    last = {}
    while proc.poll() is None:
        try:
            for tid in os.listdir(f"/proc/{proc.pid}/task"):
                try:
                    with open(f"/proc/{proc.pid}/task/{tid}/stat") as f:
                        st = f.read()
                except OSError:
                    continue
                name = st[st.index("(") + 1 : st.rindex(")")]
                fields = st[st.rindex(")") + 2 :].split()
                last[tid] = (name, (int(fields[11]) + int(fields[12])) / tick)
        except OSError:
            pass
        time.sleep(0.02)
    split = {}
    for name, secs in last.values():
        split[stage(name)] = round(split.get(stage(name), 0) + secs, 2)
    with open(out, "w") as f:
        json.dump(split, f)
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
