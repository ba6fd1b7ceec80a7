"""Tenants over HTTP: per-tenant backlog caps, priorities bounded by tier, token budgets with
OpenAI's x-ratelimit-*-tokens headers, and 202 positions under the fair schedule.

No worker runs here: admitted requests stay queued.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from dam_common.settings import CommonSettings
from dam_ingress.access import hash_key
from tests.integration.test_ingress_http import ASYNC, CHAT, ClientFactory, make_client

__all__ = ["make_client"]  # the fixture, shared with the HTTP contract tests

LIMITS = f"""
[tiers.bulk]
weight = 1
backlog = 3
[tiers.pro]
weight = 8
backlog = 50
max_priority = 1
tokens_per_minute = 600

[anonymous]
allowed = true
rate = 100
burst = 100
tier = "bulk"

[[keys]]
name = "flood"
key_sha256 = "{hash_key("sk-flood")}"
rate = 100
burst = 100
tier = "bulk"

[[keys]]
name = "pro"
key_sha256 = "{hash_key("sk-pro")}"
rate = 100
burst = 100
tier = "pro"
"""


def _as(key: str) -> dict[str, str]:
    return {**ASYNC, "Authorization": f"Bearer {key}"}


async def _client(make_client: ClientFactory, tmp_path: Path) -> Any:
    config = tmp_path / "limits.toml"
    config.write_text(LIMITS)
    return await make_client(config_file=config)


async def test_a_tenant_over_its_backlog_gets_503_and_others_are_still_admitted(
        make_client: ClientFactory, tmp_path: Path, redis: Redis,
        settings: CommonSettings) -> None:
    client = await _client(make_client, tmp_path)
    statuses = [(await client.post("/v1/chat/completions", json=CHAT,
                                   headers=_as("sk-flood"))).status for _ in range(6)]
    assert statuses == [202, 202, 202, 503, 503, 503]
    refused = await client.post("/v1/chat/completions", json=CHAT, headers=_as("sk-flood"))
    assert (await refused.json())["error"]["code"] == "tenant_backlog_full"
    assert int(refused.headers["Retry-After"]) >= 1
    ok = await client.post("/v1/chat/completions", json=CHAT, headers=_as("sk-pro"))
    assert ok.status == 202
    assert await redis.xlen(settings.keys.intake) == 4


async def test_priority_is_bounded_by_the_tier_and_bad_values_are_400(
        make_client: ClientFactory, tmp_path: Path, redis: Redis,
        settings: CommonSettings) -> None:
    client = await _client(make_client, tmp_path)
    for headers, body in (({"x-dam-priority": "high"}, CHAT),
                          ({"x-dam-priority": "7"}, CHAT),
                          ({}, {**CHAT, "metadata": {"priority": "-1"}})):
        resp = await client.post("/v1/chat/completions", json=body,
                                 headers={**_as("sk-pro"), **headers})
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "invalid_priority"
    assert await redis.xlen(settings.keys.intake) == 0
    await client.post("/v1/chat/completions", json=CHAT,
                      headers={**_as("sk-pro"), "x-dam-priority": "2"})
    await client.post("/v1/chat/completions", json={**CHAT, "metadata": {"priority": "2"}},
                      headers=_as("sk-flood"))
    prios = {f["client"]: f["prio"] for _, f in await redis.xrange(settings.keys.intake)}
    assert prios == {"key:pro": "1", "key:flood": "0"}  # each tier's max_priority


async def test_over_token_budget_is_429_with_token_headers(make_client: ClientFactory,
                                                          tmp_path: Path) -> None:
    client = await _client(make_client, tmp_path)
    big = {**CHAT, "max_tokens": 400}
    first = await client.post("/v1/chat/completions", json=big, headers=_as("sk-pro"))
    assert first.status == 202
    resp = await client.post("/v1/chat/completions", json=big, headers=_as("sk-pro"))
    assert resp.status == 429
    assert (await resp.json())["error"]["type"] == "tokens"
    assert resp.headers["x-ratelimit-limit-tokens"] == "600"
    remaining = int(resp.headers["x-ratelimit-remaining-tokens"])
    assert 0 < remaining < 200  # 600 minus 400 and the prompt's estimate
    assert resp.headers["x-ratelimit-reset-tokens"].endswith("s")
    assert int(resp.headers["Retry-After"]) >= 1


async def test_202_position_follows_the_fair_schedule(make_client: ClientFactory,
                                                      tmp_path: Path) -> None:
    client = await _client(make_client, tmp_path)
    for i in range(3):
        await client.post("/v1/chat/completions", json=CHAT,
                          headers={**ASYNC, "X-Forwarded-For": f"203.0.113.{i}"})
    resp = await client.post("/v1/chat/completions", json=CHAT, headers=_as("sk-pro"))
    body = await resp.json()
    # Three anonymous requests arrived first, but the pro tenant (weight 8) is served within
    # one round: at most one anonymous request goes before it.
    assert body["status"] == "queued" and body["position"] <= 1
    view = await (await client.get(f"/v1/requests/{body['id']}")).json()
    assert view["position"] == body["position"] and "eta_s" in view
