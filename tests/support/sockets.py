"""Raw client sockets for tests that speak HTTP/1.1 byte by byte to a real ingress."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def socket_opener(port: int) -> Iterator[Callable[[], socket.socket]]:
    """A function opening loopback connections to `port`; all of them closed on exit."""
    opened: list[socket.socket] = []

    def make() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        opened.append(sock)
        return sock

    try:
        yield make
    finally:
        for sock in opened:
            sock.close()
