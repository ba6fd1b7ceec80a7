"""One ingress process flooded from one hot key (every answer a 429, nearly all from the deny
cache), beside the same ingress with its fast deny path off (DAM_FAST_DENY=false: every
request through aiohttp) and a bare aiohttp hello handler, measured in the same run with the
same load generator (Debian's `hey`), alternated and repeated.

Two measures: requests/s flat out (`-c connections`, target >= 0.7x the bare handler), and
CPU at a fixed offered rate (`--rate`, default 5,000/s: the headline flood; target <= 50% of
one core).

    .venv/bin/python load/bench_ingress.py [--seconds 5] [--rounds 3] [--connections 100]
                                           [--rate 5000]
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


def _hey(url: str, seconds: float, pid: int, connections: int,
         rate: float = 0) -> tuple[float, float, float]:
    """Requests/s, p99 latency (s) and the server's CPU (% of one core) over the run; with
    `rate`, hey paces its workers to offer that many requests/s in all."""
    proc = psutil.Process(pid)
    cpu0, t0 = sum(proc.cpu_times()[:2]), time.monotonic()
    pace = ["-q", str(rate / connections)] if rate else []
    out = subprocess.run(["hey", "-z", f"{seconds}s", "-c", str(connections), *pace, "-m", "POST",
                          "-T", "application/json", "-H", "Authorization: Bearer sk-hot",
                          "-H", "Prefer: respond-async", "-d", BODY, url],
                         capture_output=True, text=True, check=True).stdout
    cpu = (sum(proc.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0) * 100
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = float(re.search(r"99% in ([\d.]+) secs", out).group(1))  # type: ignore[union-attr]
    return rps, p99, cpu


def _servers(redis_url: str, limits: Path) -> dict[str, tuple[subprocess.Popen[bytes], str]]:
    """The two ingresses and the bare handler, each with its URL."""
    servers = {}
    for name, fast in (("ingress", "true"), ("ingress, no fast path", "false")):
        port = free_port()
        env = {**os.environ, "DAM_REDIS_URL": redis_url, "DAM_INGRESS_PORT": str(port),
               "DAM_CONFIG_FILE": str(limits), "DAM_LOG_LEVEL": "WARNING",
               "DAM_KEY_PREFIX": f"bench-ingress-{fast}:", "DAM_FAST_DENY": fast}
        proc = subprocess.Popen([sys.executable, "-m", "dam_cli", "ingress"], env=env)
        servers[name] = (proc, f"http://127.0.0.1:{port}")
    port = free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE.format(port=port)])
    servers["bare aiohttp"] = (bare, f"http://127.0.0.1:{port}")
    _wait(f"{servers['ingress'][1]}/readyz")
    _wait(f"{servers['ingress, no fast path'][1]}/readyz")
    _wait(f"{servers['bare aiohttp'][1]}/")
    return servers


def _report(title: str, runs: dict[str, list[tuple[float, float, float]]]) -> None:
    print(title)
    for name, rs in runs.items():
        print(f"  {name:<22} {median([r for r, _, _ in rs]):>8.0f}/s  "
              f"p99 {median([p for _, p, _ in rs]) * 1000:6.1f} ms  "
              f"CPU {median([c for _, _, c in rs]):4.0f}% of a core  "
              f"(runs: {[round(r) for r, _, _ in rs]}/s, {[round(c) for _, _, c in rs]}%)")


def main(seconds: float, rounds: int, connections: int, rate: float) -> None:
    if shutil.which("hey") is None:
        sys.exit("bench_ingress needs Debian's hey (apt-get install hey)")
    print(f"machine: {machine()}; {seconds:g} s per run, {rounds} rounds, alternated")
    with redis_server() as redis_url, tempfile.TemporaryDirectory() as tmp:
        limits = Path(tmp) / "limits.toml"
        limits.write_text(f'[[keys]]\nname = "hot"\nkey_sha256 = "{hash_key("sk-hot")}"\n'
                          "rate = 1\nburst = 1\n")
        servers = _servers(redis_url, limits)
        flat: dict[str, list[tuple[float, float, float]]] = {name: [] for name in servers}
        paced: dict[str, list[tuple[float, float, float]]] = {name: [] for name in servers}
        try:
            for _ in range(rounds):
                for name, (proc, url) in servers.items():
                    target = f"{url}/v1/chat/completions"
                    flat[name].append(_hey(target, seconds, proc.pid, connections))
                    paced[name].append(_hey(target, seconds, proc.pid, 50, rate))
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(10)
    _report(f"flat out, hey -c {connections}:", flat)
    _report(f"offered {rate:g}/s, hey -c 50 -q {rate / 50:g}:", paced)
    ratio = median([r for r, _, _ in flat["ingress"]]) / median(
        [r for r, _, _ in flat["bare aiohttp"]])
    cpu = [c for _, _, c in paced["ingress"]]
    slow = [c for _, _, c in paced["ingress, no fast path"]]
    print(f"flat-out ratio ingress / bare aiohttp: {ratio:.2f}")
    print(f"CPU at {rate:g}/s, fast path / aiohttp path: {median(cpu) / median(slow):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--rate", type=float, default=5000.0)
    args = parser.parse_args()
    main(args.seconds, args.rounds, args.connections, args.rate)
