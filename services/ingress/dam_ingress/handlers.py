"""HTTP handlers: thin translations between requests and the admission / reply core."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from aiohttp import web
from redis.asyncio import Redis

from dam_common.codes import AdmitCode, AdmitResult, CancelOutcome, QueuePosition
from dam_common.connection import TRANSIENT_REDIS_ERRORS
from dam_common.entries import Field, ReplyKind
from dam_common.probes import Readiness
from dam_common.records import REQUEST_ID, read_request
from dam_common.scripts import AdmitParams, LuaScripts
from dam_ingress.access import AccessPolicy, Client, Unauthorized
from dam_ingress.admission import (
    GLOBAL_SCOPE,
    AdmissionBatcher,
    DenyCache,
    monotonic,
    tenant_scope,
)
from dam_ingress.metrics import (
    ABORT_REQUESTS,
    ADMISSION_SECONDS,
    CANCELLED,
    DENY_CACHE_HITS,
    END_TO_END_SECONDS,
    SHADOW_REJECTIONS,
    WAITING,
    count,
)
from dam_ingress.replies import Reply, ReplyRouter
from dam_ingress.responses import (
    Answer,
    error_response,
    rejection,
    rejection_answer,
    to_response,
)
from dam_ingress.settings import IngressSettings
from dam_ingress.token_estimate import reserved_tokens
from dam_ingress.validation import (
    ChatRequest,
    InvalidRequest,
    idempotency_digest,
    parse_chat_request,
    requested_priority,
)

KEEPALIVE_S = 5.0
log = logging.getLogger(__name__)


@dataclass
class IngressCore:
    """Everything a handler needs, built once by create_app."""

    settings: IngressSettings
    policy: AccessPolicy
    redis: Redis
    blocking_redis: Redis
    scripts: LuaScripts
    batcher: AdmissionBatcher
    deny_cache: DenyCache
    router: ReplyRouter
    readiness: Readiness
    ingress_id: str

    def params(self, client: Client, priority: int = 0, token_cost: int = 0) -> AdmitParams:
        """Admission parameters for one request of a client."""
        s, tier = self.settings, client.tier
        return AdmitParams(client.rate, client.burst, s.intake_rate, s.intake_burst,
                           s.backlog_cap, s.intake_maxlen, int(s.queue_deadline_s * 1000),
                           int(s.idempotency_ttl_s * 1000), client.enforce, client.tenant,
                           tier.weight, tier.backlog, priority, tier.max_priority,
                           tier.tokens_per_minute, token_cost, tier.enforce_tokens)


CORE = web.AppKey("core", IngressCore)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions: identify, deny fast, validate, admit, then answer."""
    core = request.app[CORE]
    if core.readiness.draining:
        count("unavailable", None)
        return error_response(503, "This ingress is shutting down; retry.", "server_unavailable",
                              "shutting_down", headers={"Retry-After": "1", "Connection": "close"})
    try:
        client = core.policy.resolve(request.headers.get("Authorization"), request.remote,
                                     request.headers.get("X-Forwarded-For"))
    except Unauthorized:
        count("unauthorized", None)
        return error_response(401, "Invalid or missing API key.", "invalid_request_error",
                              "invalid_api_key")
    cached = _cached_denial(core, client)
    if cached is not None:
        return to_response(_answer_cached(client, cached))
    try:
        ask = await _read_ask(request, core, client)
    except InvalidRequest as exc:
        count("bad_request", client.identity)
        return error_response(exc.status, str(exc), "invalid_request_error", exc.code, exc.param)
    started = time.perf_counter()
    try:
        result = await core.batcher.admit(
            client.identity, core.params(client, ask.priority, ask.token_cost), ask.fields,
            ask.idempotency)
    except TRANSIENT_REDIS_ERRORS as exc:
        core.readiness.mark_down(exc)
        count("unavailable", client.identity)
        return error_response(503, "The queue is unreachable; retry shortly.",
                              "server_unavailable", "dam_unavailable", headers={"Retry-After": "1"})
    ADMISSION_SECONDS.observe(time.perf_counter() - started)
    if result.code is AdmitCode.DUPLICATE:
        count("duplicate", client.identity)
        return await _original(core, result.rid)
    if result.code is not AdmitCode.ADMITTED:
        return _rejected(core, client, result)
    _learn_from_admission(core, client, result)
    _log_accepted(client, result, ask.chat.stream)
    waiting = Waiting(result.rid, client.tenant, ask.priority)
    if "respond-async" in request.headers.get("Prefer", ""):
        return await _accepted_now(core, waiting)
    if ask.chat.stream:
        return await _stream_answer(request, core, waiting)
    return await _wait_answer(request, core, waiting, started)


@dataclass(frozen=True, slots=True)
class Ask:
    """A validated request, ready for admission."""

    chat: ChatRequest
    fields: dict[str, str]
    idempotency: str
    priority: int
    token_cost: int


async def _read_ask(request: web.Request, core: IngressCore, client: Client) -> Ask:
    """Body, idempotency key and priority, checked; raises InvalidRequest."""
    raw = await _read_body(request, core)
    chat, body = parse_chat_request(raw, core.settings.max_tokens_cap)
    idem = idempotency_digest(request.headers.get("Idempotency-Key"))
    priority = client.tier.priority(requested_priority(request.headers, chat))
    fields: dict[str, str] = {Field.BODY: body.decode(), Field.INGRESS: core.ingress_id,
              Field.CLIENT: client.identity, Field.STREAM: "1" if chat.stream else "0"}
    cost = 0
    if client.tier.tokens_per_minute:
        cost = reserved_tokens(chat, core.settings.default_max_tokens)
        fields[Field.TOKENS_PER_MINUTE] = str(client.tier.tokens_per_minute)
    return Ask(chat, fields, idem, priority, cost)


def _log_accepted(client: Client, result: AdmitResult, stream: bool) -> None:
    count("accepted", client.identity)
    if result.shadowed:
        SHADOW_REJECTIONS.inc()
        log.info("would reject: over its rate (shadow mode)", extra={
            "rid": result.rid, "client": client.identity, "rule": "client_rate"})
    log.info("accepted", extra={"rid": result.rid, "client": client.identity,
                                "backlog": result.backlog, "stream": stream})


async def _read_body(request: web.Request, core: IngressCore) -> bytes:
    limit = core.settings.max_body_bytes
    too_large = InvalidRequest(f"request body is larger than {limit} bytes", "body_too_large",
                               status=413)
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    try:
        return await asyncio.wait_for(request.read(), core.settings.client_timeout_s)
    except web.HTTPRequestEntityTooLarge:  # a chunked body that grew past the limit
        raise too_large from None
    except TimeoutError:
        raise InvalidRequest(f"request body not received within "
                             f"{core.settings.client_timeout_s:g}s", "request_timeout",
                             status=408) from None


@dataclass(frozen=True, slots=True)
class Waiting:
    """An admitted request a client waits for, and where it is queued."""

    rid: str
    tenant: str
    priority: int


async def _position(core: IngressCore, rid: str) -> QueuePosition | None:
    """Fair-schedule position of a queued request; None once dispatched or unreachable."""
    try:
        return await core.scripts.position(rid)
    except TRANSIENT_REDIS_ERRORS:
        return None


async def _accepted_now(core: IngressCore, waiting: Waiting) -> web.Response:
    """202 with the request's place in the fair schedule."""
    pos = await _position(core, waiting.rid)
    if pos is None:
        return _accepted(waiting.rid, 0, "running")
    return _accepted(waiting.rid, pos.position, "queued", pos.eta_s)


def local_denial(core: IngressCore, authorization: str | None, peer: str | None,
                 forwarded_for: str | None) -> Answer | None:
    """The answer to a chat request that the deny cache alone refuses, counted as the
    handler counts it; None when Redis (or the full handler) must decide."""
    if core.readiness.draining:
        return None
    try:
        client = core.policy.resolve(authorization, peer, forwarded_for)
    except Unauthorized:
        return None
    cached = _cached_denial(core, client, probe=False)
    return None if cached is None else _answer_cached(client, cached)


def _answer_cached(client: Client, cached: AdmitResult) -> Answer:
    DENY_CACHE_HITS.inc()
    rate_limited = cached.code is AdmitCode.RATE_LIMITED
    count("rejected_rate_limit" if rate_limited else "rejected_backlog", client.identity)
    return rejection_answer(cached, client.burst)


def _cached_denial(core: IngressCore, client: Client, probe: bool = True) -> AdmitResult | None:
    """A rejection known locally: the client's rate, its tenant's or the global backlog."""
    now = monotonic()
    cache = core.deny_cache
    return (cache.check(client.identity, now, probe)
            or cache.check(tenant_scope(client.tenant), now, probe)
            or cache.check(GLOBAL_SCOPE, now, probe))


def _learn_from_admission(core: IngressCore, client: Client, result: AdmitResult) -> None:
    """What an admission tells the deny cache: the limits it passed have room (a probing
    denial is lifted), and if it took the client's last token, when the next one comes: held
    as a denial until exactly then, so the requests in between need no Redis call."""
    cache = core.deny_cache
    cache.admitted(client.identity, tenant_scope(client.tenant), GLOBAL_SCOPE)
    if result.remaining < 1 and client.enforce:
        # reset_ms is the time to a full bucket; the next whole token comes burst - 1 earlier.
        retry = result.reset_ms - int((client.burst - 1) * 1000 / client.rate)
        if retry > 0:
            cache.remember(client.identity, AdmitResult(
                AdmitCode.RATE_LIMITED, retry_ms=retry, reset_ms=result.reset_ms),
                monotonic(), exact=True)


def _rejected(core: IngressCore, client: Client, result: AdmitResult) -> web.Response:
    if log.isEnabledFor(logging.DEBUG):  # a flood would otherwise log 5,000 lines a second
        log.debug("rejected", extra={"client": client.identity, "outcome": result.code.name})
    if result.code is AdmitCode.RATE_LIMITED:
        core.deny_cache.remember(client.identity, result, monotonic())
        count("rejected_rate_limit", client.identity)
    elif result.code is AdmitCode.TOKENS_LIMITED:
        count("rejected_tokens", client.identity)
    elif result.code is AdmitCode.CIRCUIT_OPEN:
        count("unavailable", client.identity)
    else:
        scope = GLOBAL_SCOPE
        if result.code is AdmitCode.TENANT_BACKLOG_FULL:
            scope = tenant_scope(client.tenant)
        if result.code is not AdmitCode.INTAKE_RATE:
            core.deny_cache.remember(scope, result, monotonic())
        count("rejected_backlog", client.identity)
    return rejection(result, client.burst, client.tier.tokens_per_minute)


async def _original(core: IngressCore, rid: str) -> web.Response:
    """A repeated Idempotency-Key: the original's completion, or its id and state."""
    view = await read_request(core.redis, core.scripts, rid)
    if view is not None and view.status == "completed":
        return web.json_response(view.result, headers={"x-dam-request-id": rid,
                                                       "x-dam-idempotent-replay": "true"})
    status = view.status if view is not None else "unknown"
    position = view.position if view is not None and view.position is not None else 0
    resp = _accepted(rid, position, status)
    resp.headers["x-dam-idempotent-replay"] = "true"
    return resp


def _accepted(rid: str, position: int, status: str, eta_s: float | None = None) -> web.Response:
    body = {"id": rid, "object": "dam.request", "status": status, "position": position,
            "eta_s": eta_s}
    headers = {"Location": f"/v1/requests/{rid}", "x-dam-request-id": rid}
    return web.json_response(body, status=202, headers=headers)


class ClientGone(Exception):
    """The waiting caller closed its connection."""


async def _terminal_while_connected(request: web.Request, queue: asyncio.Queue[Reply]) -> Reply:
    """The terminal reply; checks every second that the caller is still there."""
    while True:
        try:
            reply = await asyncio.wait_for(queue.get(), 1.0)
        except TimeoutError:
            if request.transport is None or request.transport.is_closing():
                raise ClientGone from None
            continue
        if reply.kind is not ReplyKind.CHUNK:
            return reply


async def _cancel_if_queued(core: IngressCore, waiting: Waiting) -> None:
    """No LLM tokens for a client who left: cancel its request if queued, abort it if running."""
    rid = waiting.rid
    try:
        outcome = await core.scripts.cancel(rid, waiting.tenant, waiting.priority)
    except TRANSIENT_REDIS_ERRORS:
        return
    if outcome is CancelOutcome.CANCELLED:
        CANCELLED.inc()
        log.info("cancelled", extra={"rid": rid, "reason": "client went away while queued"})
    elif outcome is CancelOutcome.ABORTING:
        ABORT_REQUESTS.inc()
        log.info("aborting", extra={"rid": rid, "reason": "client went away while running"})


async def _wait_answer(request: web.Request, core: IngressCore, waiting: Waiting,
                       started: float) -> web.StreamResponse:
    """Hold the caller until its completion arrives, or hand it a 202 when the wait runs out."""
    rid = waiting.rid
    queue = core.router.subscribe(rid)
    WAITING.inc()
    try:
        reply = await asyncio.wait_for(_terminal_while_connected(request, queue),
                                       core.settings.wait_timeout_s)
    except TimeoutError:
        return await _accepted_now(core, waiting)
    except ClientGone:
        await _cancel_if_queued(core, waiting)
        return web.Response(status=499)  # nobody reads it: the connection is gone
    finally:
        core.router.unsubscribe(rid)
        WAITING.dec()
    elapsed = time.perf_counter() - started
    END_TO_END_SECONDS.observe(elapsed)
    log.info("answered", extra={"rid": rid, "outcome": reply.kind.value,
                                "e2e_ms": round(elapsed * 1000, 1)})
    return _terminal_response(rid, reply)


def _terminal_response(rid: str, reply: Reply) -> web.Response:
    headers = {"x-dam-request-id": rid}
    if reply.kind is ReplyKind.COMPLETED:
        return web.Response(body=reply.data, content_type="application/json", headers=headers)
    if reply.kind is ReplyKind.FAILED:
        return error_response(502, f"The model backend failed: {reply.data}", "upstream_error",
                              "backend_failed", headers=headers)
    return error_response(504, "The request waited past its deadline and was not run.",
                          "timeout", "deadline_exceeded", headers=headers)


def _sse_error(message: str, err_type: str, code: str, rid: str) -> bytes:
    doc = {"error": {"message": message, "type": err_type, "code": code, "request_id": rid}}
    return b"data: " + orjson.dumps(doc) + b"\n\n"


async def _stream_answer(request: web.Request, core: IngressCore,
                         waiting: Waiting) -> web.StreamResponse:
    """Server-sent events in OpenAI's chunk format, relayed as the worker produces them.

    Until the first token, a comment line every second tells where the request stands
    (`: queued id=... position=12 eta_s=4.1`), so a chat UI can show it.
    """
    rid = waiting.rid
    queue = core.router.subscribe(rid)
    WAITING.inc()
    resp = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        "x-dam-request-id": rid})
    try:
        await resp.prepare(request)
        await _relay(resp, queue, rid, core.settings.wait_timeout_s,
                     lambda: _queue_comment(core, rid))
    except (ConnectionResetError, ConnectionError):
        await _cancel_if_queued(core, waiting)
        raise
    finally:
        core.router.unsubscribe(rid)
        WAITING.dec()
    return resp


async def _queue_comment(core: IngressCore, rid: str) -> bytes:
    pos = await _position(core, rid)
    if pos is None:
        return f": running id={rid}\n\n".encode()
    eta = "" if pos.eta_s is None else f" eta_s={pos.eta_s}"
    return f": queued id={rid} position={pos.position}{eta}\n\n".encode()


async def _relay(resp: web.StreamResponse, queue: asyncio.Queue[Reply], rid: str,
                 timeout_s: float, progress: Callable[[], Awaitable[bytes]]) -> None:
    """Write chunks until a terminal message; a silence longer than timeout_s ends the stream.

    Before the first chunk `progress()` is written every second; after it, a keep-alive
    comment every KEEPALIVE_S of silence.
    """
    silent_since, delivery = time.monotonic(), ""
    await resp.write(await progress())
    while True:
        try:
            reply = await asyncio.wait_for(queue.get(), KEEPALIVE_S if delivery else 1.0)
        except TimeoutError:
            if time.monotonic() - silent_since > timeout_s:
                await resp.write(_sse_error(
                    f"No answer within {timeout_s:.0f}s; fetch it at /v1/requests/{rid}.",
                    "timeout", "wait_timeout", rid))
                break
            await resp.write(await progress() if not delivery else b": waiting\n\n")
            continue
        silent_since = time.monotonic()
        if reply.kind is ReplyKind.CHUNK:
            if delivery and reply.delivery != delivery:
                # The worker streaming this died and a peer started over: relaying its chunks
                # would repeat tokens. The client gets the full completion by id instead.
                await resp.write(_sse_error(
                    f"The stream was interrupted; fetch the answer at /v1/requests/{rid}.",
                    "server_error", "stream_interrupted", rid))
                break
            delivery = reply.delivery
            await resp.write(b"data: " + reply.data.encode() + b"\n\n")
        elif reply.kind is ReplyKind.COMPLETED:
            break
        elif reply.kind is ReplyKind.FAILED:
            await resp.write(_sse_error(f"The model backend failed: {reply.data}",
                                        "upstream_error", "backend_failed", rid))
            break
        else:
            await resp.write(_sse_error("The request waited past its deadline and was not run.",
                                        "timeout", "deadline_exceeded", rid))
            break
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()


async def get_request(request: web.Request) -> web.Response:
    """GET /v1/requests/{id}: queued (with position), running or terminal."""
    core = request.app[CORE]
    rid = request.match_info["rid"]
    if not REQUEST_ID.match(rid):
        return error_response(400, f"'{rid[:64]}' is not a request id (expected <ms>-<seq>).",
                              "invalid_request_error", "invalid_request_id")
    try:
        view = await read_request(core.redis, core.scripts, rid)
    except TRANSIENT_REDIS_ERRORS:
        return error_response(503, "The queue is unreachable; retry shortly.",
                              "server_unavailable", "dam_unavailable", headers={"Retry-After": "1"})
    if view is None:
        return error_response(404, f"No request {rid} (never admitted, or its record expired).",
                              "invalid_request_error", "request_not_found")
    return web.json_response(view.to_json())
