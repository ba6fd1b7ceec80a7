"""OpenAI-style error bodies and the rate-limit headers of 429 / 503 answers."""

from __future__ import annotations

import email.utils
import functools
import math
import time

import orjson
from aiohttp import web

from dam_common.codes import AdmitCode, AdmitResult

MAX_RETRY_AFTER_S = 60


def error_response(status: int, message: str, err_type: str, code: str,
                   param: str | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    """`{"error": {"message", "type", "code", "param"}}` with the given status."""
    return _json_response(status, error_body(message, err_type, code, param), headers)


def error_body(message: str, err_type: str, code: str, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": err_type, "code": code,
                                   "param": param}})


def _json_response(status: int, body: bytes, headers: dict[str, str] | None) -> web.Response:
    # Content-Type given as a header: aiohttp's content_type argument costs a parse per answer.
    all_headers = {"Content-Type": "application/json"}
    if headers:
        all_headers.update(headers)
    return web.Response(body=body, status=status, headers=all_headers)


@functools.lru_cache(maxsize=MAX_RETRY_AFTER_S + 1)
def _rate_limited_body(retry: int) -> bytes:
    """The 429 body for one Retry-After value: a flood is answered with a handful of them."""
    return error_body(f"Rate limit reached: retry in {retry}s.", "requests",
                       "rate_limit_exceeded")


def retry_after_s(result: AdmitResult) -> int:
    """Seconds a rejected client should wait, from the bucket or the current drain rate."""
    if result.code in (AdmitCode.BACKLOG_FULL, AdmitCode.TENANT_BACKLOG_FULL):
        # Time for today's backlog to clear at the rate it drained over the last second.
        drain = max(result.drain_per_s, 1)
        return min(MAX_RETRY_AFTER_S, max(1, math.ceil(result.backlog / drain)))
    return min(MAX_RETRY_AFTER_S, max(1, math.ceil(result.retry_ms / 1000)))


def rate_limit_headers(limit: int, remaining: int, reset_ms: int) -> dict[str, str]:
    """OpenAI's x-ratelimit-*-requests headers."""
    return {
        "x-ratelimit-limit-requests": str(limit),
        "x-ratelimit-remaining-requests": str(max(0, remaining)),
        "x-ratelimit-reset-requests": f"{max(0, reset_ms) / 1000:.3f}s",
    }


def token_limit_headers(limit: int, remaining: int, reset_ms: int) -> dict[str, str]:
    """OpenAI's x-ratelimit-*-tokens headers (tokens per minute)."""
    return {
        "x-ratelimit-limit-tokens": str(limit),
        "x-ratelimit-remaining-tokens": str(max(0, remaining)),
        "x-ratelimit-reset-tokens": f"{max(0, reset_ms) / 1000:.3f}s",
    }


Answer = tuple[int, bytes, dict[str, str]]
"""An answer before it is wrapped: status, body, headers (an aiohttp Response, or raw bytes
written straight to the socket by the fast deny path)."""


def rejection_answer(result: AdmitResult, burst: int, tokens_per_minute: int = 0) -> Answer:
    """Status, body and headers of the 429 or 503 for a rejected admission."""
    retry = retry_after_s(result)
    if result.code is AdmitCode.RATE_LIMITED:
        headers = rate_limit_headers(burst, result.remaining, result.reset_ms)
        headers["Retry-After"] = str(retry)
        return 429, _rate_limited_body(retry), headers
    headers = {"Retry-After": str(retry)}
    if result.code is AdmitCode.TOKENS_LIMITED:
        headers.update(token_limit_headers(tokens_per_minute, result.tokens_left,
                                           result.tokens_reset_ms))
        return 429, error_body(f"Token budget of {tokens_per_minute} tokens per minute "
                                f"reached: retry in {retry}s.", "tokens",
                                "rate_limit_exceeded"), headers
    if result.code is AdmitCode.TENANT_BACKLOG_FULL:
        body = error_body(f"Your queue is full ({result.backlog} of your requests waiting); "
                           f"retry in {retry}s.", "server_overloaded", "tenant_backlog_full")
    elif result.code is AdmitCode.CIRCUIT_OPEN:
        body = error_body(f"The model backend is failing; retry in {retry}s.",
                           "server_unavailable", "backend_unavailable")
    elif result.code is AdmitCode.INTAKE_RATE:
        body = error_body("The service is taking in requests at its limit; retry in "
                           f"{retry}s.", "server_overloaded", "intake_rate_exceeded")
    else:
        body = error_body(f"The queue is full ({result.backlog} waiting); retry in {retry}s.",
                           "server_overloaded", "backlog_full")
    return 503, body, headers


def rejection(result: AdmitResult, burst: int, tokens_per_minute: int = 0) -> web.Response:
    """The 429 or 503 answer for a rejected admission."""
    return to_response(rejection_answer(result, burst, tokens_per_minute))


def to_response(answer: Answer) -> web.Response:
    """An answer as an aiohttp response."""
    return _json_response(*answer)


_REASONS = {200: "OK", 429: "Too Many Requests", 503: "Service Unavailable"}


@functools.lru_cache(maxsize=2)
def _http_date(second: int) -> str:
    return email.utils.formatdate(second, usegmt=True)


def raw_answer(answer: Answer, close: bool = False) -> bytes:
    """An answer as the bytes of an HTTP/1.1 response, for writing straight to a socket."""
    status, body, headers = answer
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
             "Content-Type: application/json", f"Content-Length: {len(body)}",
             f"Date: {_http_date(int(time.time()))}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
