"""One ingress process flooded flat out from one hot key (every answer a 429, nearly all from
the deny cache), beside a bare aiohttp hello handler measured in the same run with the same
load generator (Debian's `hey`), alternated and repeated. Target: >= 0.7x the bare handler.

    .venv/bin/python load/bench_ingress.py [--seconds 5] [--rounds 3] [--connections 100]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from bench_common import free_port, machine, median, redis_server

from dam_ingress.access import hash_key

BARE = """
import uvloop
from aiohttp import web
async def hello(request):
    await request.read()
    return web.Response(text="hello")
app = web.Application()
app.router.add_post("/v1/chat/completions", hello)
uvloop.install()
web.run_app(app, host="127.0.0.1", port={port}, print=None, access_log=None)
"""
BODY = '{"model":"m","messages":[{"role":"user","content":"hi"}]}'


def _wait(url: str) -> None:
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP error is an answer: the server is up
                return
            time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def _hey(url: str, seconds: float, connections: int, pid: int) -> tuple[float, float, float]:
    """Requests/s, p99 latency (s) and the server's CPU (% of one core) over the run."""
    proc = psutil.Process(pid)
    cpu0, t0 = sum(proc.cpu_times()[:2]), time.monotonic()
    out = subprocess.run(["hey", "-z", f"{seconds}s", "-c", str(connections), "-m", "POST",
                          "-T", "application/json", "-H", "Authorization: Bearer sk-hot",
                          "-H", "Prefer: respond-async", "-d", BODY, url],
                         capture_output=True, text=True, check=True).stdout
    cpu = (sum(proc.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0) * 100
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = float(re.search(r"99% in ([\d.]+) secs", out).group(1))  # type: ignore[union-attr]
    return rps, p99, cpu


def main(seconds: float, rounds: int, connections: int) -> None:
    if shutil.which("hey") is None:
        sys.exit("bench_ingress needs Debian's hey (apt-get install hey)")
    print(f"machine: {machine()}; hey -c {connections}, {seconds:g} s per run")
    with redis_server() as redis_url, tempfile.TemporaryDirectory() as tmp:
        limits = Path(tmp) / "limits.toml"
        limits.write_text(f'[[keys]]\nname = "hot"\nkey_sha256 = "{hash_key("sk-hot")}"\n'
                          "rate = 1\nburst = 1\n")
        iport, bport = free_port(), free_port()
        env = {**os.environ, "DAM_REDIS_URL": redis_url, "DAM_INGRESS_PORT": str(iport),
               "DAM_CONFIG_FILE": str(limits), "DAM_LOG_LEVEL": "WARNING",
               "DAM_KEY_PREFIX": "bench-ingress:"}
        ingress = subprocess.Popen([sys.executable, "-m", "dam_cli", "ingress"], env=env)
        bare = subprocess.Popen([sys.executable, "-c", BARE.format(port=bport)])
        try:
            _wait(f"http://127.0.0.1:{iport}/readyz")
            _wait(f"http://127.0.0.1:{bport}/")
            dam, hello = [], []
            for _ in range(rounds):
                dam.append(_hey(f"http://127.0.0.1:{iport}/v1/chat/completions", seconds,
                                connections, ingress.pid))
                hello.append(_hey(f"http://127.0.0.1:{bport}/v1/chat/completions", seconds,
                                  connections, bare.pid))
        finally:
            for proc in (ingress, bare):
                proc.terminate()
                proc.wait(10)
    d, b = median([r for r, _, _ in dam]), median([r for r, _, _ in hello])
    print(f"ingress (429s) {d:>8.0f}/s  p99 {median([p for _, p, _ in dam]) * 1000:.1f} ms  "
          f"CPU {median([c for _, _, c in dam]):.0f}% of a core")
    print(f"bare aiohttp   {b:>8.0f}/s  p99 {median([p for _, p, _ in hello]) * 1000:.1f} ms  "
          f"CPU {median([c for _, _, c in hello]):.0f}% of a core")
    print(f"ratio {d / b:.2f} (runs: ingress {[round(r) for r, _, _ in dam]}, "
          f"bare {[round(r) for r, _, _ in hello]})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=100)
    args = parser.parse_args()
    main(args.seconds, args.rounds, args.connections)
