"""Real dam processes for end-to-end tests: each service its own OS process, on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tests.support.ports import free_port


@dataclass
class Proc:
    """A started service."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/readyz"

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>."""
        return f"http://127.0.0.1:{self.port}"


@dataclass
class DamStack:
    """Starts services against one Redis and key prefix; stops only what it started."""

    redis_url: str
    key_prefix: str
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)

    def _spawn(self, name: str, args: list[str], env: dict[str, str], port: int) -> Proc:
        full_env = {**os.environ, "DAM_REDIS_URL": self.redis_url,
                    "DAM_KEY_PREFIX": self.key_prefix, "DAM_LOG_LEVEL": "INFO",
                    **self.env, **env}
        log = self.log_dir / f"{name}.log"
        with open(log, "ab") as out:
            process = subprocess.Popen([sys.executable, "-m", "dam_cli", *args], env=full_env,
                                       stdout=out, stderr=subprocess.STDOUT)
        proc = Proc(name, process, port, log, args, full_env)
        self.procs.append(proc)
        return proc

    def restart(self, proc: Proc, wait: bool = True) -> None:
        """Start a stopped or killed service again, same command, port and environment."""
        with open(proc.log, "ab") as out:
            proc.process = subprocess.Popen([sys.executable, "-m", "dam_cli", *proc.args],
                                            env=proc.env, stdout=out, stderr=subprocess.STDOUT)
        if wait:
            wait_http(f"{proc.url}{proc.ready_path}", proc)

    def mock_llm(self, *flags: str, port: int | None = None) -> Proc:
        """The mock backend, e.g. mock_llm("--ttft-ms", "300")."""
        port = port or free_port()
        proc = self._spawn("mock-llm", ["mock-llm", "--port", str(port), *flags], {}, port)
        proc.ready_path = "/stats"
        wait_http(f"{proc.url}/stats", proc)
        return proc

    def ingress(self, **env: str) -> Proc:
        """One ingress."""
        port = free_port()
        proc = self._spawn("ingress", ["ingress"], {"DAM_INGRESS_PORT": str(port), **env}, port)
        wait_http(f"{proc.url}/readyz", proc)
        return proc

    def dispatcher(self, **env: str) -> Proc:
        """One dispatcher."""
        port = free_port()
        proc = self._spawn("dispatcher", ["dispatcher"], {"DAM_DISPATCHER_PORT": str(port),
                                                          **env}, port)
        wait_http(f"{proc.url}/readyz", proc)
        return proc

    def worker(self, mock: Proc, name: str = "worker", **env: str) -> Proc:
        """One worker calling `mock`."""
        port = free_port()
        proc = self._spawn(name, ["worker"], {
            "DAM_WORKER_PORT": str(port), "DAM_WORKER_ID": f"{name}-{port}",
            "DAM_LLM_BASE_URL": f"{mock.url}/v1", **env}, port)
        wait_http(f"{proc.url}/readyz", proc)
        return proc

    def kill(self, proc: Proc) -> None:
        """SIGKILL, as a crash."""
        if proc.process.poll() is None:
            proc.process.send_signal(signal.SIGKILL)
        proc.process.wait(10)

    def stop_all(self) -> None:
        """SIGTERM everything still running, SIGKILL what does not stop within 15 s."""
        for proc in reversed(self.procs):
            if proc.process.poll() is None:
                proc.process.terminate()
        deadline = time.monotonic() + 15
        for proc in reversed(self.procs):
            try:
                proc.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.process.kill()
                proc.process.wait()


def wait_http(url: str, proc: Proc, timeout_s: float = 20.0) -> None:
    """Poll until `url` answers 200; fail with the service's log if it dies or never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"{proc.name} exited: {proc.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} not ready at {url}: {proc.log.read_text()[-3000:]}")


def get_json(url: str) -> Any:
    """GET a JSON document (stats of the mock)."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        return orjson.loads(resp.read())
