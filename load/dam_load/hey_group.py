"""A single-identity flood through Debian's `hey` (Go): 5,000 requests/s at a fraction of the
CPU a Python client needs. Its per-request CSV becomes the runner's rows.

hey paces each of its workers (`-q` per worker), so it stays an open model only while answers
are faster than 1/q; requests it could not complete are absent from its CSV, which shows as an
offered rate below target in the report.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import time

import orjson

from dam_load.generator import BODY, FIELDS, Spec

PER_WORKER_RATE = 25  # each hey worker sends every 40 ms: room for answers up to 40 ms


def available() -> bool:
    """True where hey is installed."""
    return shutil.which("hey") is not None


def main() -> None:
    """`python -m dam_load.hey_group SPEC_JSON OUT_CSV`."""
    spec = Spec(**orjson.loads(sys.argv[1]))
    start = spec.t0 + spec.start_s
    time.sleep(max(0.0, start - time.time()))
    began = time.time()
    headers = [arg for name, value in spec.headers(0).items() for arg in ("-H", f"{name}: {value}")]
    workers = max(1, round(spec.rate / PER_WORKER_RATE))
    run = subprocess.run(
        ["hey", "-z", f"{spec.duration_s}s", "-c", str(workers), "-q", str(spec.rate / workers),
         "-m", "POST", "-T", "application/json", "-t", str(int(spec.timeout_s)), "-o", "csv",
         *headers, "-d", BODY.decode(), spec.url],
        capture_output=True, text=True, check=False)
    with open(sys.argv[2], "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(FIELDS)
        for row in csv.DictReader(run.stdout.splitlines()):
            sent = began + float(row["offset"]) - spec.t0
            writer.writerow((spec.group, round(sent, 4), round(sent, 4), row["status-code"],
                             row["response-time"], "", ""))


if __name__ == "__main__":
    main()
