"""A single-identity flood through Debian's `hey` (Go): 5,000 requests/s at a fraction of the
CPU a Python client needs. Its per-request CSV becomes the runner's rows.

hey paces each of its workers (`-q` per worker), so it stays an open model only while answers
are faster than 1/q; requests it could not complete are absent from its CSV, which shows as an
offered rate below target in the report.
"""

from __future__ import annotations

import csv
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson

from dam_load.generator import BODY, FIELDS, Spec

PER_WORKER_RATE = 25  # each hey worker sends every 40 ms: room for answers up to 40 ms
WORKERS_PER_PROCESS = 25


def available() -> bool:
    """True where hey is installed."""
    return shutil.which("hey") is not None


def main() -> None:
    """`python -m dam_load.hey_group SPEC_JSON OUT_CSV`.

    The workers of one hey process tick in phase: with 200 of them, the whole 40 ms worth of
    requests (200) left within about 6 ms of each tick, a burst at 40,000/s rather than a
    steady 5,000/s. Several hey processes started at evenly spread points of the tick period
    offer the group's rate as the scenario says: steadily.
    """
    spec = Spec(**orjson.loads(sys.argv[1]))
    out_path = Path(sys.argv[2])
    workers = max(1, round(spec.rate / PER_WORKER_RATE))
    n = math.ceil(workers / WORKERS_PER_PROCESS)
    period = workers / spec.rate
    runs = []
    for k in range(n):
        time.sleep(max(0.0, spec.t0 + spec.start_s + k * period / n - time.time()))
        share = workers // n + (1 if k < workers % n else 0)
        raw = out_path.with_suffix(f".hey{k}")
        began = time.time()
        with open(raw, "w") as sink:
            proc = subprocess.Popen(_command(spec, share, spec.rate / workers), stdout=sink,
                                    stderr=subprocess.DEVNULL, text=True)
        runs.append((began, proc, raw))
    with open(out_path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(FIELDS)
        for began, proc, raw in runs:
            proc.wait()
            with open(raw) as rows:
                for row in csv.DictReader(rows):
                    sent = began + float(row["offset"]) - spec.t0
                    writer.writerow((spec.group, round(sent, 4), round(sent, 4),
                                     row["status-code"], row["response-time"], "", ""))
            raw.unlink()


def _command(spec: Spec, workers: int, per_worker: float) -> list[str]:
    headers = [arg for name, value in spec.headers(0).items() for arg in ("-H", f"{name}: {value}")]
    return ["hey", "-z", f"{spec.duration_s}s", "-c", str(workers), "-q", str(per_worker),
            "-m", "POST", "-T", "application/json", "-t", str(int(spec.timeout_s)), "-o", "csv",
            *headers, "-d", BODY.decode(), spec.url]


if __name__ == "__main__":
    main()
