"""The latency the dam adds when nothing is wrong: 50 requests/s over HTTP from 50 keys, sent
to the mock LLM directly and through the whole dam (ingress, admission, intake stream,
dispatcher, work stream, worker, reply stream), alternated and repeated against the same
backend. Prints p50/p99 of each and the difference.

    .venv/bin/python load/bench_latency.py [--seconds 20] [--rounds 3] [--rate 50]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_common import machine, median

from dam_load.generator import Spec, run
from dam_load.runner import Phase
from dam_load.scenario import load_scenario


def quantile(values: list[float], q: float) -> float:
    """The q-quantile of the values (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(url: str, rate: float, seconds: float) -> tuple[float, float, float]:
    """Offer `rate`/s for `seconds` to `url`: p50 and p99 of the successes (s), success ratio."""
    spec = Spec(url=url, group="legit", rate=rate, identities=int(rate), identity_offset=0,
                identify_by="key", t0=time.time() + 0.5, start_s=0, duration_s=seconds,
                stream=False, timeout_s=30)
    rows = asyncio.run(run(spec))
    ok = [row[4] for row in rows if row[3] == 200]
    if not ok:
        raise SystemExit(f"no request to {url} succeeded: {rows[:3]}")
    return quantile(ok, 0.5), quantile(ok, 0.99), len(ok) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=50)
    args = parser.parse_args()
    scenario = load_scenario("steady")
    scenario.groups[0].rate = args.rate
    scenario.groups[0].identities = int(args.rate)
    runs: dict[str, list[tuple[float, float, float]]] = {"backend directly": [], "the dam": []}
    with tempfile.TemporaryDirectory() as tmp:
        phase = Phase(scenario, "after", Path(tmp))
        try:
            backend, dam = phase.start()
            urls = {"backend directly": f"{backend}/v1/chat/completions", "the dam": dam}
            measure(dam, args.rate, 3)  # warm-up: connections opened, scripts loaded
            for _ in range(args.rounds):
                for name, url in urls.items():
                    runs[name].append(measure(url, args.rate, args.seconds))
        finally:
            phase.stop()
    print(f"machine: {machine()}; {args.rate:g} requests/s for {args.seconds:g} s per run, "
          f"{args.rounds} rounds, alternated")
    medians = {}
    for name, results in runs.items():
        p50, p99 = median([r[0] for r in results]), median([r[1] for r in results])
        medians[name] = (p50, p99)
        print(f"  {name:17} p50 {p50 * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms  success "
              f"{min(r[2] for r in results):.1%}  (runs p50: "
              f"{[round(r[0] * 1000, 1) for r in results]} ms)")
    (d50, d99), (b50, b99) = medians["the dam"], medians["backend directly"]
    print(f"added by the dam: p50 +{(d50 - b50) * 1000:.1f} ms, p99 +{(d99 - b99) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
