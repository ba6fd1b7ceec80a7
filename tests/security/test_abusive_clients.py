"""Slow, oversized, smuggling and connection-hoarding clients against a real ingress process."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.support.sockets import socket_opener
from tests.support.stack import DamStack, Proc

pytestmark = pytest.mark.e2e

CHAT = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'


@pytest.fixture(params=["fast path", "aiohttp only"])
def ingress(stack: DamStack, request: pytest.FixtureRequest) -> Proc:
    return stack.ingress(DAM_CLIENT_TIMEOUT_S="1.5", DAM_MAX_CONNECTIONS="20",
                         DAM_ANON_RATE="1000", DAM_ANON_BURST="1000",
                         DAM_FAST_DENY=str(request.param == "fast path").lower())


@pytest.fixture
def connect(ingress: Proc) -> Iterator[object]:
    with socket_opener(ingress.port) as make:
        yield make


def _status(sock: socket.socket) -> int:
    """Status of the first response on the socket (0 if the server just closed it)."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return 0
        data += chunk
    return int(data.split(b" ", 2)[1])


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def test_trickled_headers_are_cut_off(connect) -> None:  # type: ignore[no-untyped-def]
    sock = connect()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: dam\r\n")
    started = time.monotonic()
    for _ in range(3):
        sock.sendall(b"X-Slow: a\r\n")
        time.sleep(0.3)
    assert _closed_within(sock, 5.0)
    assert time.monotonic() - started < 4.0


def test_trickled_body_gets_408(connect) -> None:  # type: ignore[no-untyped-def]
    sock = connect()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: dam\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"model\"")
    assert _status(sock) == 408


def test_oversize_header_is_refused(connect) -> None:  # type: ignore[no-untyped-def]
    sock = connect()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: dam\r\nX-Big: " + b"a" * 20_000
                 + b"\r\nContent-Length: " + str(len(CHAT)).encode() + b"\r\n\r\n" + CHAT)
    assert _status(sock) in (400, 431)


@pytest.mark.parametrize("request_bytes", [
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: dam\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: dam\r\nContent-Length: 5\r\n"
    b"Content-Length: 7\r\n\r\nhello",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: dam\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"zz\r\nhello\r\n0\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: dam\r\nTransfer-Encoding: xchunked\r\n\r\n",
])
def test_smuggling_attempts_are_rejected_by_the_parser(connect, request_bytes: bytes
                                                       ) -> None:  # type: ignore[no-untyped-def]
    sock = connect()
    sock.sendall(request_bytes)
    assert _status(sock) in (400, 501)


def _get(sock: socket.socket, path: str = "/healthz") -> int:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: dam\r\n\r\n".encode())
    return _status(sock)


def _counter(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " "))


def test_at_the_cap_the_longest_idle_connection_makes_room(ingress: Proc, connect
                                                           ) -> None:  # type: ignore[no-untyped-def]
    parked = [connect() for _ in range(20)]
    assert [_get(sock) for sock in parked] == [200] * 20  # served, now idle on keep-alive
    newcomer = connect()
    assert _get(newcomer) == 200  # let in, not refused
    assert _closed_within(parked[0], 1.0)  # the one idle the longest was closed for it
    assert _get(parked[-1]) == 200  # the others are kept
    # one closed for the newcomer, one for the connection this metrics request opens
    assert _counter(ingress.port, "dam_ingress_idle_connections_closed_total") == 2


def test_when_every_connection_is_busy_a_newcomer_gets_a_clear_503(connect
                                                                   ) -> None:  # type: ignore[no-untyped-def]
    busy = [connect() for _ in range(20)]
    for sock in busy:  # each holds a request whose body is still to come
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: dam\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{")
    time.sleep(0.2)
    assert _status(connect()) == 503  # refused at once, not left hanging
    for sock in busy:
        sock.close()
    time.sleep(0.3)
    assert _get(connect()) == 200  # and the ingress recovers
