"""The fast deny path: requests the deny cache refuses are answered from the socket.

Under a flood nearly every request is refused by the local deny cache, a decision of a few
microseconds; aiohttp's machinery around it (parser callbacks, request and response objects,
router, signals, writer) costs many times more. This protocol sits between the socket and
aiohttp's RequestHandler. It frames each request itself (request line, headers, a
Content-Length body) and, when the deny cache refuses it, writes the 429/503 bytes straight
to the transport. Every other request goes to aiohttp byte for byte, one whole request at a
time, so aiohttp's parser always starts at a request boundary.

Only the plainest requests are answered here: POST /v1/chat/completions over HTTP/1.1 with a
Content-Length body within the size limit, no Expect or Connection: close, and only while
aiohttp holds no request of this connection, so answers keep the order of the requests.
Anything this framer does not understand (Transfer-Encoding, Upgrade, bare CR or LF, repeated
Content-Length, folded or malformed headers) hands the connection to aiohttp for good: aiohttp
answers it exactly as it would without this path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from aiohttp.web_protocol import RequestHandler

from dam_ingress.metrics import FAST_DENIALS, response_counter
from dam_ingress.responses import Answer, raw_answer

CHAT_PATH = b"/v1/chat/completions"
_WATCHED = frozenset({b"content-length", b"transfer-encoding", b"authorization",
                      b"x-forwarded-for", b"connection", b"expect", b"upgrade"})
MAX_HEAD_BYTES = 32 * 1024  # longer heads are aiohttp's to refuse

Decide = Callable[[str | None, str | None, str | None], Answer | None]
"""(Authorization, peer address, X-Forwarded-For) -> the local refusal, or None."""


class Unframeable(Exception):
    """Bytes this framer does not parse: the connection is aiohttp's from here on."""


@dataclass(slots=True)
class Head:
    """One request's head as far as the fast path needs it."""

    size: int  # request line and headers, the blank line included
    body: int  # Content-Length
    eligible: bool  # a plain chat request the deny cache may answer
    authorization: str | None = None
    forwarded_for: str | None = None


def parse_head(buf: bytes, max_line: int, max_body: int) -> Head | None:
    """The head at the start of `buf`; None while incomplete; Unframeable if it is not plain.

    `max_line` and `max_body` are aiohttp's limits: a request past them is left to aiohttp,
    which refuses it (400 / 413) as it always did.
    """
    end = buf.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES)
    if end < 0:
        if len(buf) >= MAX_HEAD_BYTES or buf.count(b"\n") != buf.count(b"\r\n"):
            raise Unframeable
        return None
    raw = buf[:end]
    crlf = raw.count(b"\r\n")
    if raw.count(b"\n") != crlf or raw.count(b"\r") != crlf:
        raise Unframeable  # bare CR or LF: parsers disagree on those, aiohttp decides
    lines = raw.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] == b"CONNECT" or not parts[2].startswith(b"HTTP/1."):
        raise Unframeable
    fields = _fields(lines)
    length = fields.get(b"content-length", b"0")
    if not length.isdigit() or len(length) > 15:
        raise Unframeable
    body = int(length)
    eligible = (parts[0] == b"POST" and parts[1] == CHAT_PATH and parts[2] == b"HTTP/1.1"
                and body <= max_body and b"expect" not in fields
                and fields.get(b"connection", b"").lower() != b"close"
                and max(map(len, lines)) <= max_line)
    head = Head(end + 4, body, eligible)
    if eligible:
        head.authorization = _text(fields.get(b"authorization"))
        head.forwarded_for = _text(fields.get(b"x-forwarded-for"))
        head.eligible = (head.authorization is not None or b"authorization" not in fields) and (
            head.forwarded_for is not None or b"x-forwarded-for" not in fields)
    return head


def _fields(lines: list[bytes]) -> dict[bytes, bytes]:
    """The watched header fields (first value of each); Unframeable on anything unusual."""
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name[-1:] in b" \t" or name[:1] in b" \t":
            raise Unframeable  # folded line or whitespace before the colon
        key = name.lower()
        if key not in _WATCHED:
            continue
        if key in fields and key in (b"content-length", b"transfer-encoding"):
            raise Unframeable
        fields.setdefault(key, value.strip(b" \t"))
    if b"transfer-encoding" in fields or b"upgrade" in fields:
        raise Unframeable
    return fields


def _text(value: bytes | None) -> str | None:
    """A header value as text; None if absent or not plain ASCII (aiohttp takes those)."""
    if value is None or not value.isascii():
        return None
    return value.decode("ascii")


def aiohttp_idle(handler: RequestHandler) -> bool:
    """True while aiohttp waits for this connection's next request and holds none.

    Reads two private attributes of aiohttp's RequestHandler (aiohttp is pinned; the fast
    path's tests fail if they change, as the connection-cap tests do for
    `keepalive_deadline`'s): an answer written while aiohttp still works on an earlier
    request would overtake that request's answer.
    """
    waiter = handler._waiter
    return waiter is not None and not waiter.done() and not handler._messages


def keepalive_deadline(handler: RequestHandler) -> float:
    """When aiohttp would close this connection if nothing more came (loop time): the
    earliest is the one idle the longest. The fast path moves it on each answer it writes."""
    return handler._next_keepalive_close_time


class FastDenyProtocol(asyncio.Protocol):
    """Frames requests; answers deny-cache refusals itself, hands the rest to aiohttp."""

    def __init__(self, inner: RequestHandler, decide: Decide, max_line: int, max_body: int,
                 on_lost: Callable[[RequestHandler], object]) -> None:
        self._inner = inner
        self._on_lost = on_lost
        self._decide = decide
        self._max_line = max_line
        self._max_body = max_body
        self._transport: asyncio.Transport | None = None
        self._peer: str | None = None
        self._buf = b""
        self._left = 0  # body bytes of the current request still to come
        self._forwarding = True  # whether those bytes go to aiohttp or are dropped
        self._aiohttp_only = False
        self._writes_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._peer = peer[0] if isinstance(peer, tuple) and peer else None
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._buf = b""
        self._on_lost(self._inner)
        self._inner.connection_lost(exc)

    @property
    def between_requests(self) -> bool:
        """No part of a request received and not yet passed on or answered."""
        return not self._buf and not self._left

    def eof_received(self) -> None:
        self._hand_over()
        self._inner.eof_received()

    def pause_writing(self) -> None:
        self._writes_paused = True
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._writes_paused = False
        self._inner.resume_writing()

    def data_received(self, data: bytes) -> None:
        if self._aiohttp_only:
            self._inner.data_received(data)
            return
        buf = self._buf + data if self._buf else data
        self._buf = b""
        while buf:
            if self._left:
                buf = self._take_body(buf)
                continue
            try:
                head = parse_head(buf, self._max_line, self._max_body)
            except Unframeable:
                self._buf = buf
                self._hand_over()
                return
            if head is None:
                self._buf = buf
                return
            answer = self._answer(head)
            self._left = head.body
            self._forwarding = answer is None
            if answer is None:
                self._inner.data_received(buf[:head.size])
            else:
                cast(asyncio.Transport, self._transport).write(answer)
            buf = buf[head.size:]

    def _take_body(self, buf: bytes) -> bytes:
        n = min(self._left, len(buf))
        if self._forwarding:
            self._inner.data_received(buf[:n])
        self._left -= n
        return buf[n:]

    def _hand_over(self) -> None:
        """From now on every byte goes to aiohttp, starting with what is buffered."""
        self._aiohttp_only = True
        buf, self._buf = self._buf, b""
        if buf:
            self._inner.data_received(buf)

    def _answer(self, head: Head) -> bytes | None:
        if not head.eligible or self._writes_paused or not aiohttp_idle(self._inner):
            return None
        answer = self._decide(head.authorization, self._peer, head.forwarded_for)
        if answer is None:
            return None
        FAST_DENIALS.inc()
        response_counter(answer[0]).inc()
        inner = self._inner
        # aiohttp would close an idle connection `keepalive_timeout` after its last answer;
        # this connection is not idle, its answers just come from here.
        inner._next_keepalive_close_time = inner._loop.time() + inner.keepalive_timeout
        return raw_answer(answer)
