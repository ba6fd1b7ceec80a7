"""The ingress's HTTP contract (400/401/413/429/503/202/404) over a real server and real Redis.

No worker runs here: admitted requests stay queued, which is what these answers are about.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from dam_common.settings import CommonSettings
from dam_ingress.access import hash_key
from dam_ingress.app import create_app
from dam_ingress.settings import IngressSettings

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
ASYNC = {"Prefer": "respond-async"}
ClientFactory = Callable[..., Coroutine[Any, Any, TestClient[Any, Any]]]


@pytest_asyncio.fixture
async def make_client(settings: CommonSettings) -> AsyncIterator[ClientFactory]:
    clients: list[TestClient[Any, Any]] = []

    async def factory(**overrides: Any) -> TestClient[Any, Any]:
        values = {"redis_url": settings.redis_url, "key_prefix": settings.key_prefix, **overrides}
        ingress = IngressSettings(**values)
        client = TestClient(TestServer(create_app(ingress)))
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


async def _assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status
    body = await resp.json()
    assert set(body["error"]) >= {"message", "type", "code"}
    assert body["error"]["code"] == code
    return body


@pytest.mark.parametrize("raw, code", [
    (b"{not json", "invalid_json"),
    (b"\xff\xfe", "invalid_json"),
    (b"[1, 2]", "invalid_body"),
    (b'{"model": "m"}', "invalid_body"),
    (b'{"model": "m", "messages": "hi"}', "invalid_body"),
    (b'{"model": 3, "messages": [{"role": "user", "content": "x"}]}', "invalid_body"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
     "invalid_body"),
    (b'{"model": "m", "messages": [{"role": "wizard", "content": "x"}]}', "invalid_body"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 999999}',
     "max_tokens_too_large"),
])
async def test_bad_body_is_400_and_enters_no_stream(make_client: ClientFactory, redis: Redis,
                                                    settings: CommonSettings, raw: bytes,
                                                    code: str) -> None:
    client = await make_client()
    resp = await client.post("/v1/chat/completions", data=raw)
    await _assert_error(resp, 400, code)
    assert await redis.xlen(settings.keys.intake) == 0


async def test_body_over_limit_is_413(make_client: ClientFactory, redis: Redis,
                                      settings: CommonSettings) -> None:
    client = await make_client(max_body_bytes=2048)
    big = {"model": "m", "messages": [{"role": "user", "content": "x" * 4096}]}
    await _assert_error(await client.post("/v1/chat/completions", json=big), 413,
                        "body_too_large")
    assert await redis.xlen(settings.keys.intake) == 0


async def test_over_rate_is_429_with_openai_headers(make_client: ClientFactory, redis: Redis,
                                                    settings: CommonSettings) -> None:
    client = await make_client(anon_rate=1, anon_burst=2)
    codes = [(await client.post("/v1/chat/completions", json=CHAT, headers=ASYNC)).status
             for _ in range(2)]
    assert codes == [202, 202]
    resp = await client.post("/v1/chat/completions", json=CHAT, headers=ASYNC)
    await _assert_error(resp, 429, "rate_limit_exceeded")
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.headers["x-ratelimit-limit-requests"] == "2"
    assert resp.headers["x-ratelimit-remaining-requests"] == "0"
    assert resp.headers["x-ratelimit-reset-requests"].endswith("s")
    assert await redis.xlen(settings.keys.intake) == 2


async def test_full_backlog_is_503_with_retry_after(make_client: ClientFactory, redis: Redis,
                                                    settings: CommonSettings) -> None:
    client = await make_client(backlog_cap=3, anon_rate=100, anon_burst=100)
    for _ in range(3):
        assert (await client.post("/v1/chat/completions", json=CHAT, headers=ASYNC)).status == 202
    resp = await client.post("/v1/chat/completions", json=CHAT, headers=ASYNC)
    await _assert_error(resp, 503, "backlog_full")
    assert int(resp.headers["Retry-After"]) >= 1
    assert await redis.xlen(settings.keys.intake) == 3


async def test_respond_async_gives_202_location_and_queued_position(
        make_client: ClientFactory) -> None:
    client = await make_client(anon_rate=100, anon_burst=100)
    first = await (await client.post("/v1/chat/completions", json=CHAT, headers=ASYNC)).json()
    resp = await client.post("/v1/chat/completions", json=CHAT, headers=ASYNC)
    second = await resp.json()
    assert resp.status == 202
    assert resp.headers["Location"] == f"/v1/requests/{second['id']}"
    assert (first["position"], second["position"], second["status"]) == (0, 1, "queued")
    view = await (await client.get(resp.headers["Location"])).json()
    assert (view["id"], view["status"], view["position"]) == (second["id"], "queued", 1)


async def test_wait_that_runs_out_becomes_202(make_client: ClientFactory) -> None:
    client = await make_client(wait_timeout_s=0.3)
    resp = await client.post("/v1/chat/completions", json=CHAT)
    assert resp.status == 202
    assert (await resp.json())["status"] == "queued"


async def test_request_lookup_rejects_bad_ids_and_reports_unknown(
        make_client: ClientFactory) -> None:
    client = await make_client()
    await _assert_error(await client.get("/v1/requests/nope"), 400, "invalid_request_id")
    await _assert_error(await client.get("/v1/requests/1-0"), 404, "request_not_found")


async def test_api_keys_are_required_once_configured(make_client: ClientFactory, tmp_path: Path,
                                                     redis: Redis,
                                                     settings: CommonSettings) -> None:
    config = tmp_path / "limits.toml"
    config.write_text(f'[[keys]]\nname = "alice"\nkey_sha256 = "{hash_key("sk-alice")}"\n'
                      'rate = 5\nburst = 5\n')
    client = await make_client(config_file=config)
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": "sk-alice"}):
        resp = await client.post("/v1/chat/completions", json=CHAT, headers={**ASYNC, **headers})
        body = await _assert_error(resp, 401, "invalid_api_key")
        assert "sk-" not in body["error"]["message"]
    ok = await client.post("/v1/chat/completions", json=CHAT,
                           headers={**ASYNC, "Authorization": "Bearer sk-alice"})
    assert ok.status == 202
    [(_, fields)] = await redis.xrange(settings.keys.intake)
    assert fields["client"] == "key:alice"


async def test_forwarded_for_counts_only_from_trusted_proxies(
        make_client: ClientFactory) -> None:
    untrusted = await make_client(anon_rate=1, anon_burst=1, deny_cache_ms=0)
    trusted = await make_client(anon_rate=1, anon_burst=1, deny_cache_ms=0,
                                trusted_proxies="127.0.0.1", key_prefix="other:")

    async def statuses(client: TestClient[Any, Any]) -> list[int]:
        return [(await client.post("/v1/chat/completions", json=CHAT,
                                   headers={**ASYNC, "X-Forwarded-For": f"203.0.113.{i}"})).status
                for i in (1, 2)]

    assert await statuses(untrusted) == [202, 429]  # both are the loopback peer
    assert await statuses(trusted) == [202, 202]  # two clients behind the proxy


async def test_readyz_turns_ready_once_redis_and_scripts_are(make_client: ClientFactory) -> None:
    client = await make_client()
    for _ in range(50):
        resp = await client.get("/readyz")
        if resp.status == 200:
            break
        await asyncio.sleep(0.1)
    assert (await resp.json())["ready"] is True
    assert (await client.get("/healthz")).status == 200
    metrics = await (await client.get("/metrics")).text()
    assert "dam_ingress_requests_total" in metrics


async def test_repeated_idempotency_key_gets_the_same_request(make_client: ClientFactory,
                                                              redis: Redis,
                                                              settings: CommonSettings) -> None:
    client = await make_client(anon_rate=100, anon_burst=100)
    headers = {**ASYNC, "Idempotency-Key": "order-42"}
    first = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
    again = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert first.status == again.status == 202
    assert (await first.json())["id"] == (await again.json())["id"]
    assert again.headers["x-dam-idempotent-replay"] == "true"
    assert await redis.xlen(settings.keys.intake) == 1
    bad = await client.post("/v1/chat/completions", json=CHAT,
                            headers={**ASYNC, "Idempotency-Key": "x" * 300})
    await _assert_error(bad, 400, "invalid_idempotency_key")
    assert await redis.xlen(settings.keys.intake) == 1


async def test_unknown_routes_and_methods_get_openai_style_errors(
        make_client: ClientFactory) -> None:
    client = await make_client()
    await _assert_error(await client.get("/v1/models/nope"), 404, "not_found")
    resp = await client.get("/v1/chat/completions")
    await _assert_error(resp, 405, "method_not_allowed")
    assert resp.headers["Allow"] == "POST"
    metrics = await (await client.get("/metrics")).text()
    assert 'dam_ingress_http_responses_total{status="405"}' in metrics
