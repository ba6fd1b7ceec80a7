"""Pure logic of the worker: Retry-After parsing, backoff, stream assembly; and settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from tenacity import RetryCallState

from dam_common.errors import TransientBackendError
from dam_common.keys import Keys
from dam_ingress.settings import IngressSettings
from dam_worker.backend import parse_retry_after
from dam_worker.completion import StreamAssembler
from dam_worker.retry_policy import WaitHonouringRetryAfter, backend_retrying


def test_retry_after_parses_seconds_and_rejects_garbage() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def _state_after(exc: BaseException) -> RetryCallState:
    state = RetryCallState(backend_retrying(3, 0.1, 5.0), None, (), {})
    state.set_exception((type(exc), exc, None))
    return state


def test_backoff_honours_retry_after_within_the_cap() -> None:
    wait = WaitHonouringRetryAfter(base_s=0.1, cap_s=5.0)
    assert wait(_state_after(TransientBackendError("429", retry_after_s=3))) == 3
    assert wait(_state_after(TransientBackendError("429", retry_after_s=60))) == 5.0
    jittered = wait(_state_after(TransientBackendError("503")))
    assert 0 <= jittered <= 5.0


def test_stream_assembler_rebuilds_the_completion() -> None:
    asm = StreamAssembler()
    asm.add('{"id": "c1", "created": 5, "model": "m", '
            '"choices": [{"delta": {"role": "assistant", "content": ""}}]}')
    asm.add('{"id": "c1", "choices": [{"delta": {"content": "Hel"}}]}')
    asm.add("not json")
    asm.add('{"id": "c1", "choices": [{"delta": {"content": "lo"}, "finish_reason": "length"}],'
            ' "usage": {"completion_tokens": 2}}')
    doc = asm.completion()
    assert doc["id"] == "c1" and doc["object"] == "chat.completion"
    assert doc["choices"][0]["message"]["content"] == "Hello"
    assert doc["choices"][0]["finish_reason"] == "length"
    assert doc["usage"] == {"completion_tokens": 2}


def test_every_key_of_a_pipeline_shares_one_hash_tag() -> None:
    keys = Keys(prefix="x:", pipeline="p1")
    names = [keys.intake, keys.work, keys.dlq, keys.worker_leases, keys.counters,
             keys.client_bucket("ip:1.2.3.4"), keys.request("1-0"), keys.reply("i1")]
    assert all(name.startswith("x:{p1}:") for name in names)


def test_stream_cap_below_backlog_cap_is_refused() -> None:
    with pytest.raises(ValidationError, match="DAM_STREAM_MAXLEN"):
        IngressSettings(backlog_cap=1000, stream_maxlen=500)
    assert IngressSettings(backlog_cap=1000).intake_maxlen == 2000
