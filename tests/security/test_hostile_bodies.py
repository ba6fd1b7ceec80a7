"""Property-based: whatever body a client sends, the answer is a clear 4xx or an admission,
never a 5xx, and nothing but admissions ever enters the intake stream."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis as SyncRedis

from dam_common.keys import Keys
from tests.support.stack import DamStack, Proc

pytestmark = pytest.mark.e2e



def _dumps(value: Any) -> bytes:
    """Stdlib JSON: unlike orjson it writes integers of any size, which clients may send."""
    return json.dumps(value).encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=30)
chat_like = st.fixed_dictionaries(
    {"model": st.one_of(st.text(max_size=300), st.integers(), st.none()),
     "messages": st.one_of(
         st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "bot", "system"]),
                                          "content": json_values}), max_size=3),
         json_values)},
    optional={"stream": json_values, "max_tokens": st.one_of(st.integers(), json_values)})
raw_bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(_dumps),
    chat_like.map(_dumps),
    st.integers(1, 2000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.text(max_size=20).map(lambda s: b'{"model": "a", "model": "b", "messages": '
                             + _dumps(s) + b"}"),
    st.just(b'{"model": "m\x00", "messages": [{"role": "user", "content": "\xff\xfe"}]}'),
    st.integers(4000, 200_000).map(lambda n: b'{"model": "' + b"a" * n + b'", "messages": []}'),
)


def _post(ingress: Proc, body: bytes) -> tuple[int, Any]:
    req = urllib.request.Request(f"{ingress.url}/v1/chat/completions", data=body,
                                 headers={"Prefer": "respond-async",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read())


def test_any_body_gets_a_clear_answer_and_only_admissions_enter(stack: DamStack) -> None:
    ingress = stack.ingress(DAM_ANON_RATE="100000", DAM_ANON_BURST="100000",
                            DAM_BACKLOG_CAP="100000", DAM_MAX_BODY_BYTES="4096")
    redis = SyncRedis.from_url(stack.redis_url, decode_responses=True)
    intake = Keys(prefix=stack.key_prefix).intake
    admitted = 0

    @settings(max_examples=300, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(raw_bodies)
    def check(body: bytes) -> None:
        nonlocal admitted
        status, doc = _post(ingress, body)
        assert status in (202, 400, 413), (status, doc)
        if status == 202:
            admitted += 1
        else:
            assert set(doc["error"]) >= {"message", "type", "code"}
        assert redis.xlen(intake) == admitted

    try:
        check()
    finally:
        redis.close()
