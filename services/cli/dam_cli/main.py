"""`dam`: one command line for every service and the operator's tools."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dam_common.connection import TRANSIENT_REDIS_ERRORS, make_redis
from dam_common.errors import ConfigError
from dam_common.settings import CommonSettings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dam", description="Traffic Dam: a shield for LLM chat "
                                "APIs. Services are configured by DAM_* environment variables.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="run the whole dam locally (Redis, mock LLM, ingress, "
                        "dispatcher, workers)")
    up.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    up.add_argument("--data-dir", type=Path, default=Path(".dam"), help="data and logs "
                    "(default .dam/)")
    sub.add_parser("ingress", help="run one ingress (HTTP API)")
    sub.add_parser("dispatcher", help="run one dispatcher")
    sub.add_parser("worker", help="run one LLM worker")
    mock = sub.add_parser("mock-llm", help="run the OpenAI-compatible mock backend")
    mock.add_argument("--port", type=int)
    mock.add_argument("--ttft-ms", type=float)
    mock.add_argument("--tokens", type=int)
    mock.add_argument("--tokens-per-s", type=float)
    mock.add_argument("--error-rate", type=float)
    mock.add_argument("--status", type=int, choices=(429, 500, 502, 503))
    mock.add_argument("--retry-after-s", type=float)
    mock.add_argument("--slots", type=int, help="concurrent generations (0: unlimited)")
    mock.add_argument("--queue-memory-kb", type=int, help="memory held per waiting request")
    mock.add_argument("--crash-at-queue", type=int, help="exit like an OOM kill past this queue")
    mock.add_argument("--max-queue", type=int, help="429 beyond this many waiting (with all "
                      "slots busy)")
    status = sub.add_parser("status", help="the pipeline on one screen")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--interval", type=float, default=1.0, help="seconds rates are "
                        "measured over (default 1)")
    dlq = sub.add_parser("dlq", help="inspect or replay dead-lettered requests")
    dsub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    dl = dsub.add_parser("list", help="list dead letters")
    dl.add_argument("--count", type=int, default=100)
    dl.add_argument("--json", action="store_true")
    dr = dsub.add_parser("replay", help="requeue dead letters (all when no ID is given)")
    dr.add_argument("ids", nargs="*", metavar="ID")
    dr.add_argument("--deadline-s", type=float, default=600.0,
                    help="queue deadline of the replayed requests (default 600)")
    fl = sub.add_parser("flood", help="run a flood scenario before/after and write a report")
    fl.add_argument("scenario", help="name in load/scenarios/ (single-abuser, "
                    "distributed-flood, burst, steady) or a path to a .toml")
    fl.add_argument("--duration-s", type=float, help="shorten (or lengthen) the scenario")
    fl.add_argument("--out", type=Path, default=Path("out"), help="output root (default out/)")
    fl.add_argument("--phases", default="before,after", help="before,after (default both)")
    hk = sub.add_parser("hash-key", help="print the SHA-256 to put in the limits file")
    hk.add_argument("key")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse, run, and turn configuration or connection problems into one clear line."""
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            print(f"dam: invalid setting {field}: {err['msg']}", file=sys.stderr)
        return 2
    except (ConfigError, ValueError) as exc:
        print(f"dam: {exc}", file=sys.stderr)
        return 2
    except TRANSIENT_REDIS_ERRORS as exc:
        print(f"dam: cannot reach Redis: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "up": _up, "ingress": _ingress, "dispatcher": _dispatcher, "worker": _worker,
        "mock-llm": _mock, "status": _status, "dlq": _dlq, "hash-key": _hash_key,
        "flood": _flood,
    }
    return handlers[args.command](args)


def _up(args: argparse.Namespace) -> int:
    from dam_cli.up import run_up

    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    return run_up(args.workers, args.data_dir, os.environ.get("REDIS_URL")
                  or os.environ.get("DAM_REDIS_URL"))


def _ingress(_: argparse.Namespace) -> int:
    from dam_ingress.main import run
    from dam_ingress.settings import IngressSettings

    run(IngressSettings())
    return 0


def _dispatcher(_: argparse.Namespace) -> int:
    from dam_dispatcher.main import run
    from dam_dispatcher.settings import DispatcherSettings

    run(DispatcherSettings())
    return 0


def _worker(_: argparse.Namespace) -> int:
    from dam_worker.main import run
    from dam_worker.settings import WorkerSettings

    run(WorkerSettings())
    return 0


def _mock(args: argparse.Namespace) -> int:
    from dam_mock_llm.main import run
    from dam_mock_llm.settings import MockSettings

    flags = {k: v for k, v in vars(args).items()
             if k not in ("command",) and v is not None}
    run(MockSettings(**flags))
    return 0


def _with_redis(work: Callable[[Any, CommonSettings], Coroutine[Any, Any, int]]) -> int:
    settings = CommonSettings()

    async def _go() -> int:
        redis = make_redis(settings.redis_url, max_connections=4, name="dam-cli")
        try:
            return await work(redis, settings)
        finally:
            await redis.aclose()

    return asyncio.run(_go())


def _status(args: argparse.Namespace) -> int:
    from dam_cli.status import collect, render

    async def work(redis: Any, settings: CommonSettings) -> int:
        doc = await collect(redis, settings.keys, args.interval)
        print(json.dumps(doc, indent=2) if args.json else render(doc))
        return 0

    return _with_redis(work)


def _dlq(args: argparse.Namespace) -> int:
    from dam_cli.dlq import list_entries, replay

    async def work(redis: Any, settings: CommonSettings) -> int:
        if args.dlq_command == "list":
            rows = await list_entries(redis, settings, args.count)
            if args.json:
                print(json.dumps(rows, indent=2))
            for row in [] if args.json else rows:
                print(f"{row['dlq_id']}  rid={row['rid']}  deliveries={row['deliveries']}  "
                      f"{row['last_error'][:120]}")
            if not rows and not args.json:
                print("no dead letters")
            return 0
        replayed, missing = await replay(redis, settings, args.ids, args.deadline_s)
        for dlq_id, rid in replayed:
            print(f"replayed {dlq_id} (request {rid})")
        for dlq_id in missing:
            print(f"dam: no dead letter {dlq_id}", file=sys.stderr)
        return 1 if missing else 0

    return _with_redis(work)


def _flood(args: argparse.Namespace) -> int:
    from dam_load.flood import run_flood
    from dam_load.scenario import ScenarioError

    phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
    if not phases or set(phases) - {"before", "after"}:
        raise ConfigError("--phases takes before, after or both")
    try:
        run_flood(args.scenario, args.out, args.duration_s, phases)
    except ScenarioError as exc:
        raise ConfigError(str(exc)) from None
    return 0


def _hash_key(args: argparse.Namespace) -> int:
    from dam_ingress.access import hash_key

    print(hash_key(args.key))
    return 0
