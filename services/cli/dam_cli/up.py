"""`dam up`: the whole dam on one machine, each service its own OS process.

A service that dies is restarted after a pause (as a container's `restart: unless-stopped`
would); the others keep running. Ctrl-C stops everything, Redis last.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dam_cli.redis_server import EmbeddedServer

RESTART_DELAY_S = 1.0


@dataclass
class Service:
    """One child process and how to start it again."""

    name: str
    args: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    log_path: Path | None = None
    started_at: float = field(default=0.0)

    def start(self) -> None:
        """Spawn the process, its output appended to its log file."""
        assert self.log_path is not None
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dam_cli", *self.args], env=self.env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.started_at = time.monotonic()


def plan(workers: int, redis_url: str, base_env: dict[str, str]) -> list[Service]:
    """The services of `dam up`, in start order."""
    env = {**base_env, "DAM_REDIS_URL": redis_url}
    services = [Service("mock-llm", ["mock-llm"], env),
                Service("ingress", ["ingress"], env),
                Service("dispatcher", ["dispatcher"], env)]
    base_port = int(env.get("DAM_WORKER_PORT", "8082"))
    for i in range(workers):
        wenv = {**env, "DAM_WORKER_PORT": str(base_port + i), "DAM_WORKER_ID": f"worker-{i + 1}"}
        services.append(Service(f"worker-{i + 1}", ["worker"], wenv))
    return services


def summary(redis_url: str, log_dir: Path, services: list[Service], env: dict[str, str]) -> str:
    """The one screen printed once everything runs."""
    host, port = env.get("DAM_INGRESS_HOST", "127.0.0.1"), env.get("DAM_INGRESS_PORT", "8080")
    ingress = f"http://{host}:{port}"
    mock = f"http://{env.get('DAM_MOCK_HOST', '127.0.0.1')}:{env.get('DAM_MOCK_PORT', '8090')}"
    pids = ", ".join(f"{s.name}={s.process.pid}" for s in services if s.process)
    return "\n".join([
        "Traffic Dam is up.",
        f"  chat API     {ingress}/v1/chat/completions   (OpenAI base_url: {ingress}/v1)",
        f"  request      {ingress}/v1/requests/<id>",
        f"  metrics      {ingress}/metrics   readiness {ingress}/readyz",
        f"  mock LLM     {mock}/v1   stats {mock}/stats",
        f"  redis        {redis_url}",
        f"  logs         {log_dir}/<service>.log",
        f"  processes    {pids}",
        "  status       dam status      dead letters   dam dlq list",
        "Ctrl-C stops everything.",
    ])


def run_up(workers: int, data_dir: Path, redis_url: str | None) -> int:
    """Start everything, supervise, stop on SIGINT/SIGTERM."""
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    server = None
    if not redis_url:
        port = int(os.environ.get("DAM_EMBEDDED_PORT", "6399"))
        server = EmbeddedServer(port, data_dir / "redis",
                                os.environ.get("DAM_APPENDFSYNC", "everysec"))
        server.start()
        redis_url = server.url
    services = plan(workers, redis_url, dict(os.environ))
    try:
        for svc in services:
            svc.log_path = log_dir / f"{svc.name}.log"
            svc.start()
        print(summary(redis_url, log_dir, services, dict(os.environ)), flush=True)
        _supervise(services, lambda: stopping)
    finally:
        _stop_all(services)
        if server is not None:
            server.stop()
    return 0


def _supervise(services: list[Service], stopping: object) -> None:
    while not stopping():  # type: ignore[operator]
        for svc in services:
            if svc.process is not None and svc.process.poll() is not None:
                if time.monotonic() - svc.started_at < RESTART_DELAY_S:
                    continue
                svc.restarts += 1
                print(f"{svc.name} exited with {svc.process.returncode}; restarting "
                      f"(restart {svc.restarts})", flush=True)
                svc.start()
        time.sleep(0.2)


def _stop_all(services: list[Service], grace_s: float = 25.0) -> None:
    """SIGTERM in reverse start order (workers hand back first), then SIGKILL stragglers."""
    for svc in reversed(services):
        if svc.process is not None and svc.process.poll() is None:
            svc.process.terminate()
    deadline = time.monotonic() + grace_s
    for svc in reversed(services):
        if svc.process is None:
            continue
        try:
            svc.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            svc.process.kill()
            svc.process.wait()
    print("Traffic Dam stopped.", flush=True)
