"""The fast deny path against a real ingress process: deny-cache refusals written straight to
the socket must look like aiohttp's, keep the order of answers on a connection, and leave
every request the framer does not understand to aiohttp."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
from collections.abc import Iterator

import aiohttp
import pytest

from tests.support.sockets import socket_opener
from tests.support.stack import DamStack, Proc

pytestmark = pytest.mark.e2e

CHAT = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'


def chat(*headers: bytes, body: bytes = CHAT) -> bytes:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: dam\r\n"
    head += b"".join(h + b"\r\n" for h in headers)
    return head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


QUEUE = chat(b"Prefer: respond-async")


@pytest.fixture
def ingress(stack: DamStack) -> Proc:
    # One request per client per minute: after the first, every request is refused.
    return stack.ingress(DAM_ANON_RATE="0.0167", DAM_ANON_BURST="1", DAM_WAIT_TIMEOUT_S="1",
                         DAM_CLIENT_TIMEOUT_S="1.5", DAM_TRUSTED_PROXIES="127.0.0.1")


@pytest.fixture
def connect(ingress: Proc) -> Iterator[object]:
    _UNREAD.clear()
    with socket_opener(ingress.port) as make:
        yield make


_UNREAD: dict[int, bytes] = {}


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The next whole response (Content-Length framed) off the socket, in arrival order."""
    data = _UNREAD.pop(sock.fileno(), b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(rest) < length:
        rest += sock.recv(65536)
    if len(rest) > length:
        _UNREAD[sock.fileno()] = rest[length:]
    return int(lines[0].split(" ")[1]), headers, rest[:length]


def fast_denials(ingress: Proc) -> float:
    with urllib.request.urlopen(f"{ingress.url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    line = next(x for x in text.splitlines() if x.startswith("dam_ingress_fast_denials_total"))
    return float(line.split()[-1])


def refused_client(connect, address: bytes) -> socket.socket:  # type: ignore[no-untyped-def]
    """A keep-alive connection of a client that is over its rate, held in the deny cache."""
    sock = connect()
    forwarded = b"X-Forwarded-For: " + address
    sock.sendall(chat(forwarded, b"Prefer: respond-async"))
    assert read_response(sock)[0] == 202
    sock.sendall(chat(forwarded))  # refused by the admission script: the deny cache learns it
    assert read_response(sock)[0] == 429
    return sock


def test_a_refusal_from_the_socket_matches_aiohttps_answer(connect, ingress: Proc
                                                           ) -> None:  # type: ignore[no-untyped-def]
    sock = connect()
    forwarded = b"X-Forwarded-For: 203.0.113.1"
    sock.sendall(chat(forwarded, b"Prefer: respond-async"))
    assert read_response(sock)[0] == 202
    sock.sendall(chat(forwarded))
    status, slow_headers, slow_body = read_response(sock)  # aiohttp's answer, via Redis
    before = fast_denials(ingress)
    sock.sendall(chat(forwarded))
    fast_status, fast_headers, fast_body = read_response(sock)
    assert fast_denials(ingress) == before + 1
    assert (status, fast_status) == (429, 429)
    assert fast_body == slow_body
    expected = set(slow_headers) - {"server"}
    assert set(fast_headers) == expected
    for name in ("content-type", "retry-after", "x-ratelimit-limit-requests",
                 "x-ratelimit-remaining-requests"):
        assert fast_headers[name] == slow_headers[name]


def test_a_refusal_waits_behind_the_answer_aiohttp_is_still_working_on(
        connect, ingress: Proc) -> None:  # type: ignore[no-untyped-def]
    refused_client(connect, b"203.0.113.2").close()
    sock = connect()
    # A synchronous request that is admitted waits for its completion (no worker runs), and
    # gets its 202 after DAM_WAIT_TIMEOUT_S; the refused client's request comes behind it.
    sock.sendall(chat(b"X-Forwarded-For: 203.0.113.3"))
    time.sleep(0.3)
    sock.sendall(chat(b"X-Forwarded-For: 203.0.113.2"))
    assert read_response(sock)[0] == 202
    assert read_response(sock)[0] == 429
    # Pipelined in one write, the same order holds.
    sock.sendall(chat(b"X-Forwarded-For: 203.0.113.4") + chat(b"X-Forwarded-For: 203.0.113.2"))
    assert [read_response(sock)[0] for _ in range(2)] == [202, 429]


def test_a_request_trickled_byte_by_byte_is_framed_and_refused(connect, ingress: Proc
                                                                ) -> None:  # type: ignore[no-untyped-def]
    sock = refused_client(connect, b"203.0.113.5")
    before = fast_denials(ingress)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(0, len(request := chat(b"X-Forwarded-For: 203.0.113.5")), 7):
        sock.sendall(request[i:i + 7])
        time.sleep(0.002)
    assert read_response(sock)[0] == 429
    sock.sendall(QUEUE)  # the next request on the connection starts at the right byte
    assert read_response(sock)[0] == 202
    assert fast_denials(ingress) == before + 1


def test_a_busy_refused_connection_outlives_the_idle_timeout(connect, ingress: Proc
                                                             ) -> None:  # type: ignore[no-untyped-def]
    sock = refused_client(connect, b"203.0.113.6")
    started = time.monotonic()
    while time.monotonic() - started < 3.0:  # twice DAM_CLIENT_TIMEOUT_S
        sock.sendall(chat(b"X-Forwarded-For: 203.0.113.6"))
        assert read_response(sock)[0] == 429
        time.sleep(0.25)


@pytest.mark.parametrize("framing", [
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"Content-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    b"Content-Length: 5\r\n Folded: yes\r\n\r\nhello",
    b"Content-Length : 5\r\n\r\nhello",
])
def test_a_refused_client_smuggling_gets_aiohttps_400(connect, ingress: Proc, framing: bytes
                                                      ) -> None:  # type: ignore[no-untyped-def]
    sock = refused_client(connect, b"203.0.113.7")
    before = fast_denials(ingress)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: dam\r\n"
                 b"X-Forwarded-For: 203.0.113.7\r\n" + framing)
    assert read_response(sock)[0] == 400
    assert fast_denials(ingress) == before


async def test_a_flooding_client_is_still_admitted_at_its_rate(stack: DamStack) -> None:
    # The deny cache must shorten the way to a refusal, not take the client's rate from it.
    ingress = stack.ingress(DAM_ANON_RATE="5", DAM_ANON_BURST="1", DAM_DENY_CACHE_MS="100")
    statuses: list[int] = []
    seconds = 3.0

    async def flood(http: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            async with http.post(f"{ingress.url}/v1/chat/completions", data=CHAT,
                                 headers={"Prefer": "respond-async"}) as resp:
                await resp.read()
                statuses.append(resp.status)

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(flood(http) for _ in range(20)))
    admitted = statuses.count(202)
    assert set(statuses) == {202, 429}
    assert len(statuses) > 200  # a flood: the client asked far more often than its rate
    # 1 (burst) + 5/s for 3 s; at most a token period (200 ms) lost per refill to the cache.
    assert 0.7 * (1 + 5 * seconds) <= admitted <= 1 + 5 * (seconds + 0.5), admitted
    assert fast_denials(ingress) > 0


async def test_a_client_just_under_its_rate_is_never_refused(stack: DamStack) -> None:
    # Each request takes the bucket's only token; the next comes 60 ms later, after the
    # 50 ms refill. A denial foreseen from the empty bucket must not outlast that refill.
    ingress = stack.ingress(DAM_ANON_RATE="20", DAM_ANON_BURST="1", DAM_DENY_CACHE_MS="100")
    statuses = []
    async with aiohttp.ClientSession() as http:
        for _ in range(25):
            async with http.post(f"{ingress.url}/v1/chat/completions", data=CHAT,
                                 headers={"Prefer": "respond-async"}) as resp:
                statuses.append(resp.status)
            await asyncio.sleep(0.06)
    assert statuses == [202] * 25


def test_with_the_fast_path_off_aiohttp_answers_every_refusal(stack: DamStack) -> None:
    ingress = stack.ingress(DAM_ANON_RATE="0.0167", DAM_ANON_BURST="1", DAM_FAST_DENY="false")
    sock = socket.create_connection(("127.0.0.1", ingress.port), timeout=5)
    try:
        sock.sendall(QUEUE)
        assert read_response(sock)[0] == 202
        for _ in range(3):
            sock.sendall(QUEUE)
            status, headers, _ = read_response(sock)
            assert status == 429
            assert "server" in headers  # written by aiohttp
    finally:
        _UNREAD.clear()
        sock.close()
    assert fast_denials(ingress) == 0
