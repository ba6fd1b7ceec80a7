"""The fast deny path's framer: which request heads it frames, which it may answer, and which
it leaves to aiohttp."""

from __future__ import annotations

import pytest

from dam_ingress.fast_deny import Unframeable, parse_head

BODY = b'{"model": "m"}'
LIMITS = {"max_line": 8190, "max_body": 1_000_000}


def head(*headers: bytes, line: bytes = b"POST /v1/chat/completions HTTP/1.1") -> bytes:
    return line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


def test_a_plain_chat_request_is_framed_with_its_identity_headers() -> None:
    raw = head(b"Host: dam", b"authorization: Bearer sk-1", b"X-Forwarded-For: 1.2.3.4",
               b"Content-Length: 14")
    parsed = parse_head(raw + BODY + b"POST", **LIMITS)
    assert parsed is not None
    assert (parsed.size, parsed.body, parsed.eligible) == (len(raw), 14, True)
    assert (parsed.authorization, parsed.forwarded_for) == ("Bearer sk-1", "1.2.3.4")


def test_an_unfinished_head_waits_for_more_bytes() -> None:
    assert parse_head(b"POST /v1/chat/completions HTTP/1.1\r\nHost: d", **LIMITS) is None


def test_a_request_without_a_body_has_length_zero() -> None:
    parsed = parse_head(head(b"Host: dam"), **LIMITS)
    assert parsed is not None and parsed.body == 0


@pytest.mark.parametrize("raw", [
    head(b"Transfer-Encoding: chunked"),
    head(b"Content-Length: 5", b"Content-Length: 7"),
    head(b"Content-Length: -5"),
    head(b"Content-Length: 5", b" folded"),
    head(b"Content-Length : 5"),
    head(b"Upgrade: websocket", b"Connection: upgrade"),
    head(line=b"CONNECT dam:443 HTTP/1.1"),
    head(line=b"POST /v1/chat/completions"),
    head(line=b"PRI * HTTP/2.0"),
    b"POST /v1/chat/completions HTTP/1.1\nHost: dam\n\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: d\ram\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nX: " + b"a" * 40_000,
])
def test_anything_unusual_is_left_to_aiohttp(raw: bytes) -> None:
    with pytest.raises(Unframeable):
        parse_head(raw, **LIMITS)


@pytest.mark.parametrize("raw", [
    head(b"Content-Length: 0", line=b"GET /v1/chat/completions HTTP/1.1"),
    head(b"Content-Length: 0", line=b"POST /v1/chat/completions?x=1 HTTP/1.1"),
    head(b"Content-Length: 0", line=b"POST /v1/chat/completions HTTP/1.0"),
    head(b"Content-Length: 2000000"),
    head(b"Connection: close"),
    head(b"Expect: 100-continue", b"Content-Length: 14"),
    head(b"Authorization: Bearer s\xc3\xa9cret"),
    head(b"X-Long: " + b"a" * 9000),
])
def test_requests_the_fast_path_must_not_answer_are_framed_but_not_eligible(raw: bytes) -> None:
    parsed = parse_head(raw, **LIMITS)
    assert parsed is not None
    assert parsed.size == len(raw)
    assert not parsed.eligible
