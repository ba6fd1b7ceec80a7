"""OpenAI-style error bodies and the rate-limit headers of 429 / 503 answers."""

from __future__ import annotations

import functools
import math

import orjson
from aiohttp import web

from dam_common.codes import AdmitCode, AdmitResult

MAX_RETRY_AFTER_S = 60


def error_response(status: int, message: str, err_type: str, code: str,
                   param: str | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    """`{"error": {"message", "type", "code", "param"}}` with the given status."""
    return _json_response(status, _error_body(message, err_type, code, param), headers)


def _error_body(message: str, err_type: str, code: str, param: str | None = None) -> bytes:
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
    return _error_body(f"Rate limit reached: retry in {retry}s.", "requests",
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


def rejection(result: AdmitResult, burst: int, tokens_per_minute: int = 0) -> web.Response:
    """The 429 or 503 answer for a rejected admission."""
    retry = retry_after_s(result)
    if result.code is AdmitCode.RATE_LIMITED:
        headers = rate_limit_headers(burst, result.remaining, result.reset_ms)
        headers["Retry-After"] = str(retry)
        return _json_response(429, _rate_limited_body(retry), headers)
    if result.code is AdmitCode.TOKENS_LIMITED:
        headers = {"Retry-After": str(retry), **token_limit_headers(
            tokens_per_minute, result.tokens_left, result.tokens_reset_ms)}
        return error_response(429, f"Token budget of {tokens_per_minute} tokens per minute "
                              f"reached: retry in {retry}s.", "tokens", "rate_limit_exceeded",
                              headers=headers)
    if result.code is AdmitCode.TENANT_BACKLOG_FULL:
        return error_response(503, f"Your queue is full ({result.backlog} of your requests "
                              f"waiting); retry in {retry}s.", "server_overloaded",
                              "tenant_backlog_full", headers={"Retry-After": str(retry)})
    if result.code is AdmitCode.CIRCUIT_OPEN:
        return error_response(503, "The model backend is failing; retry in "
                              f"{retry}s.", "server_unavailable", "backend_unavailable",
                              headers={"Retry-After": str(retry)})
    if result.code is AdmitCode.INTAKE_RATE:
        return error_response(503, "The service is taking in requests at its limit; retry "
                              f"in {retry}s.", "server_overloaded", "intake_rate_exceeded",
                              headers={"Retry-After": str(retry)})
    return error_response(503, f"The queue is full ({result.backlog} waiting); retry in "
                          f"{retry}s.", "server_overloaded", "backlog_full",
                          headers={"Retry-After": str(retry)})
