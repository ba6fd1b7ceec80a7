"""Pure logic of the ingress: deny cache, Retry-After, identity, body validation."""

from __future__ import annotations

import pytest

from dam_common.codes import AdmitCode, AdmitResult
from dam_ingress.access import (
    AccessPolicy,
    Anonymous,
    ApiKey,
    Client,
    Unauthorized,
    hash_key,
    parse_trusted,
)
from dam_ingress.admission import DenyCache, tenant_scope
from dam_ingress.responses import retry_after_s
from dam_ingress.validation import InvalidRequest, parse_chat_request

ANON = Anonymous(2.0, 4)
DENIED = AdmitResult(AdmitCode.RATE_LIMITED, retry_ms=10, reset_ms=500)


def test_deny_cache_holds_a_denial_for_at_least_the_hold_time() -> None:
    cache = DenyCache(hold_ms=100)
    cache.remember("c1", DENIED, now=10.0)
    assert cache.check("c1", 10.05) is not None
    assert cache.check("c2", 10.05) is None
    assert cache.check("c1", 10.101) is None


def test_when_a_hold_ends_one_caller_probes_redis_and_the_rest_wait_for_its_answer() -> None:
    cache = DenyCache(hold_ms=100, probe_ms=50)
    cache.remember("c1", DENIED, now=0.0)
    assert cache.check("c1", 0.101) is None  # the probe
    held = cache.check("c1", 0.102)
    assert held is not None and held.retry_ms <= 50
    cache.admitted("c1")  # the probe was admitted: the client has room again
    assert cache.check("c1", 0.103) is None
    assert cache.check("c1", 0.104) is None
    assert len(cache) == 0


def test_a_probe_refused_again_renews_the_hold_and_a_lost_probe_is_retried() -> None:
    cache = DenyCache(hold_ms=100, probe_ms=50)
    cache.remember("c1", DENIED, now=0.0)
    assert cache.check("c1", 0.2) is None
    cache.remember("c1", DENIED, now=0.201)  # the probe's answer: still over the rate
    assert cache.check("c1", 0.29) is not None
    assert cache.check("c1", 0.302) is None  # next probe
    assert cache.check("c1", 0.32) is not None
    assert cache.check("c1", 0.353) is None  # that probe never answered: another one asks


def test_a_foreseen_denial_lasts_exactly_its_retry_time() -> None:
    cache = DenyCache(hold_ms=100)
    cache.remember("c1", DENIED, now=0.0, exact=True)  # retry_ms=10
    assert cache.check("c1", 0.009) is not None
    assert cache.check("c1", 0.011) is None


def test_an_admission_lifts_only_probing_denials() -> None:
    cache = DenyCache(hold_ms=100)
    cache.remember("c1", DENIED, now=0.0)
    cache.admitted("c1")  # a request admitted before the denial was learned
    assert cache.check("c1", 0.05) is not None


def test_deny_cache_holds_longer_when_the_bucket_says_so() -> None:
    cache = DenyCache(hold_ms=100)
    cache.remember("c1", AdmitResult(AdmitCode.RATE_LIMITED, retry_ms=400, reset_ms=900), 0.0)
    held = cache.check("c1", 0.3)
    assert held is not None and 0 < held.retry_ms <= 101


def test_deny_cache_off_at_zero() -> None:
    cache = DenyCache(hold_ms=0)
    cache.remember("c1", DENIED, 0.0)
    assert cache.check("c1", 0.0) is None


def test_deny_cache_stays_bounded() -> None:
    cache = DenyCache(hold_ms=1000, max_entries=10)
    for i in range(25):
        cache.remember(f"c{i}", DENIED, 0.0)
    assert len(cache) <= 10


def test_retry_after_comes_from_bucket_or_drain_rate() -> None:
    assert retry_after_s(AdmitResult(AdmitCode.RATE_LIMITED, retry_ms=1500)) == 2
    assert retry_after_s(AdmitResult(AdmitCode.RATE_LIMITED, retry_ms=3)) == 1
    assert retry_after_s(AdmitResult(AdmitCode.BACKLOG_FULL, backlog=1000, drain_per_s=100)) == 10
    assert retry_after_s(AdmitResult(AdmitCode.BACKLOG_FULL, backlog=1000, drain_per_s=0)) == 60


def test_forwarded_for_is_read_right_to_left_past_trusted_hops() -> None:
    policy = AccessPolicy([], ANON, parse_trusted("10.0.0.0/8, 127.0.0.1"))
    assert policy.client_address("127.0.0.1", "198.51.100.7, 10.1.1.1") == "198.51.100.7"
    assert policy.client_address("127.0.0.1", "6.6.6.6, 198.51.100.7") == "198.51.100.7"
    assert policy.client_address("192.0.2.9", "198.51.100.7") == "192.0.2.9"
    assert policy.client_address("127.0.0.1", "not-an-ip") == "127.0.0.1"


def test_api_key_lookup_by_hash() -> None:
    policy = AccessPolicy([ApiKey("alice", hash_key("sk-a"), 5.0, 10)], ANON, [])
    assert policy.resolve("Bearer sk-a", "127.0.0.1", None) == Client(
        "key:alice", 5.0, 10, tenant="key:alice")
    for header in (None, "", "Bearer", "Bearer sk-b", "Basic sk-a"):
        with pytest.raises(Unauthorized):
            policy.resolve(header, "127.0.0.1", None)


def test_without_keys_clients_are_their_address() -> None:
    policy = AccessPolicy([], ANON, [])
    assert policy.resolve(None, "192.0.2.1", None) == Client("ip:192.0.2.1", 2.0, 4,
                                                             tenant="anon")


def test_anonymous_clients_hash_into_a_bounded_number_of_tenants() -> None:
    policy = AccessPolicy([], Anonymous(2.0, 4, buckets=8), [])
    tenants = {policy.resolve(None, f"10.0.{i // 256}.{i % 256}", None).tenant
               for i in range(10_000)}
    assert tenants == {f"anon-{b}" for b in range(8)}
    again = policy.resolve(None, "10.0.0.7", None).tenant
    assert policy.resolve(None, "10.0.0.7", None).tenant == again


def test_valid_body_is_canonicalised() -> None:
    req, body = parse_chat_request(
        b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "top_p": 0.5}', 100)
    assert req.model == "m" and not req.stream
    assert body == b'{"model":"m","messages":[{"role":"user","content":"hi"}],"top_p":0.5}'


def test_body_errors_name_the_field() -> None:
    with pytest.raises(InvalidRequest) as err:
        parse_chat_request(b'{"model": "m", "messages": []}', 100)
    assert err.value.code == "invalid_body" and err.value.param == "messages"
    with pytest.raises(InvalidRequest) as err:
        parse_chat_request(b'{"model": "m", "messages": [{"role": "user"}], "max_tokens": 101}',
                           100)
    assert err.value.code == "max_tokens_too_large"


def test_keys_and_anonymous_clients_side_by_side_when_allowed() -> None:
    policy = AccessPolicy([ApiKey("alice", hash_key("sk-a"), 5.0, 10)], ANON, [],
                          allow_anonymous=True)
    assert policy.resolve("Bearer sk-a", "192.0.2.1", None).identity == "key:alice"
    assert policy.resolve(None, "192.0.2.1", None).identity == "ip:192.0.2.1"
    with pytest.raises(Unauthorized):
        policy.resolve("Bearer sk-wrong", "192.0.2.1", None)


def test_deny_cache_holds_a_full_tenant_backlog_as_a_503_for_that_tenant_only() -> None:
    cache = DenyCache(hold_ms=100)
    full = AdmitResult(AdmitCode.TENANT_BACKLOG_FULL, backlog=300, drain_per_s=80)
    cache.remember(tenant_scope("anon"), full, now=0.0)
    held = cache.check(tenant_scope("anon"), 0.05)
    assert held is not None
    assert (held.code, held.backlog, held.drain_per_s) == (AdmitCode.TENANT_BACKLOG_FULL, 300, 80)
    assert cache.check(tenant_scope("key:alice"), 0.05) is None
    assert cache.check(tenant_scope("anon"), 0.11) is None
