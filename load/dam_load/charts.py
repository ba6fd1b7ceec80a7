"""PNG charts of a flood run: before and after side by side, on the same axes."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import itertools

import matplotlib.pyplot as plt

from dam_load.runner import PhaseResult
from dam_load.summary import percentile

STATUS_CLASSES = (("200", "#2a9d8f"), ("202", "#8ab17d"), ("429", "#e9c46a"),
                  ("503", "#f4a261"), ("5xx", "#e76f51"), ("error", "#6d2e46"))


def _per_second(rows: list[dict[str, Any]], pick: Any = None) -> dict[int, int]:
    counts: dict[int, int] = defaultdict(int)
    for r in rows:
        if pick is None or pick(r):
            counts[int(float(r["sent_s"]))] += 1
    return counts


def _status_class(status: str) -> str:
    code = int(status)
    if code == 0:
        return "error"
    if code >= 500 and code != 503:
        return "5xx"
    return status if status in ("200", "202", "429", "503") else "5xx"


def _side_by_side(results: list[PhaseResult], title: str, ylabel: str, sharey: bool = True):  # type: ignore[no-untyped-def]
    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4), sharey=sharey,
                             squeeze=False)
    fig.suptitle(title)
    for ax, res in zip(axes[0], results, strict=True):
        ax.set_title(res.phase)
        ax.set_xlabel("seconds into the run")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    return fig, axes[0]


def rates(results: list[PhaseResult], out: Path) -> None:
    fig, axes = _side_by_side(results, "Offered vs admitted vs backend (requests/s)", "req/s")
    for ax, res in zip(axes, results, strict=True):
        offered = _per_second(res.rows)
        admitted = _per_second(res.rows, lambda r: r["status"] in ("200", "202"))
        totals = [(s["t"], s["backend"]["requests_total"]) for s in res.samples if s.get("backend")]
        backend = [(b[0], max(0, b[1] - a[1])) for a, b in itertools.pairwise(totals)]
        xs = sorted(offered)
        ax.plot(xs, [offered[x] for x in xs], label="offered")
        ax.plot(xs, [admitted.get(x, 0) for x in xs], label="answered 200/202")
        ax.plot([t for t, _ in backend], [v for _, v in backend], label="backend starts")
        ax.set_yscale("symlog", linthresh=100)
        ax.legend()
    fig.savefig(out, dpi=90, bbox_inches="tight")
    plt.close(fig)


def status_mix(results: list[PhaseResult], out: Path) -> None:
    fig, axes = _side_by_side(results, "Status mix over time", "answers/s")
    for ax, res in zip(axes, results, strict=True):
        per: dict[str, dict[int, int]] = {c: defaultdict(int) for c, _ in STATUS_CLASSES}
        for r in res.rows:
            per[_status_class(r["status"])][int(float(r["sent_s"]))] += 1
        xs = sorted({x for c in per.values() for x in c})
        bottom = [0] * len(xs)
        for cls, colour in STATUS_CLASSES:
            ys = [per[cls].get(x, 0) for x in xs]
            ax.bar(xs, ys, bottom=bottom, color=colour, width=1.0, label=cls)
            bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
        ax.legend(fontsize=7)
    fig.savefig(out, dpi=90, bbox_inches="tight")
    plt.close(fig)


def latency(results: list[PhaseResult], out: Path) -> None:
    fig, axes = _side_by_side(results, "Latency per group (p50 solid, p95 dashed)", "seconds")
    for ax, res in zip(axes, results, strict=True):
        groups = sorted({r["group"] for r in res.rows})
        for group in groups:
            per: dict[int, list[float]] = defaultdict(list)
            for r in res.rows:
                if r["group"] == group:
                    per[int(float(r["sent_s"]))].append(float(r["latency_s"]))
            xs = sorted(per)
            line = ax.plot(xs, [percentile(per[x], 0.5) for x in xs], label=f"{group} p50")
            ax.plot(xs, [percentile(per[x], 0.95) for x in xs], linestyle="--",
                    color=line[0].get_color(), label=f"{group} p95")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.savefig(out, dpi=90, bbox_inches="tight")
    plt.close(fig)


def backlog(results: list[PhaseResult], out: Path) -> None:
    fig, axes = _side_by_side(results, "Waiting: dam backlog (Redis) and backend queue", "requests")
    for ax, res in zip(axes, results, strict=True):
        ts = [s["t"] for s in res.samples]
        ax.plot(ts, [(s.get("backend") or {}).get("queued", 0) for s in res.samples],
                label="backend queue")
        if any(s.get("pipeline") for s in res.samples):
            ax.plot(ts, [(s.get("pipeline") or {}).get("intake_backlog", 0) for s in res.samples],
                    label="dam intake backlog")
        ax.legend()
    fig.savefig(out, dpi=90, bbox_inches="tight")
    plt.close(fig)


def processes(results: list[PhaseResult], out: Path) -> None:
    fig, axes = plt.subplots(2, len(results), figsize=(6.5 * len(results), 7), squeeze=False,
                             sharey="row")
    fig.suptitle("CPU and RSS per process")
    for col, res in enumerate(results):
        names = sorted({n for s in res.samples for n in s["processes"]
                        if not n.startswith("generator")})
        for name in names:
            ts = [s["t"] for s in res.samples if name in s["processes"]]
            axes[0][col].plot(ts, [s["processes"][name]["cpu"] for s in res.samples
                                   if name in s["processes"]], label=name)
            axes[1][col].plot(ts, [s["processes"][name]["rss_mb"] for s in res.samples
                                   if name in s["processes"]], label=name)
        axes[0][col].set_title(res.phase)
        axes[0][col].set_ylabel("CPU %")
        axes[1][col].set_ylabel("RSS MiB")
        axes[1][col].set_xlabel("seconds into the run")
        axes[0][col].legend(fontsize=7)
    fig.savefig(out, dpi=90, bbox_inches="tight")
    plt.close(fig)


def draw_all(results: list[PhaseResult], outdir: Path) -> list[str]:
    """Every chart; returns their file names."""
    drawn = []
    for name, fn in (("rates", rates), ("status", status_mix), ("latency", latency),
                     ("backlog", backlog), ("processes", processes)):
        fn(results, outdir / f"{name}.png")
        drawn.append(f"{name}.png")
    return drawn
