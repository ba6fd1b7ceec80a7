"""The AIMD limit of the worker's backend concurrency (pure logic, explicit clock)."""

from __future__ import annotations

import pytest

from dam_worker.concurrency import AimdLimit


def test_starts_at_the_maximum_and_backs_off_multiplicatively() -> None:
    limit = AimdLimit(1, 20)
    assert limit.current == 20
    assert limit.observe_overload(now=0.0)
    assert limit.current == 10


def test_overload_counts_once_per_smoothed_round_trip() -> None:
    limit = AimdLimit(1, 20)
    for _ in range(30):
        limit.observe_success(0.5, 0.0)  # calls take about half a second
    limit.observe_overload(10.0)
    assert not limit.observe_overload(10.3)
    assert limit.observe_overload(10.6)


def test_one_burst_of_overload_counts_once_per_cooldown() -> None:
    limit = AimdLimit(1, 20, cooldown_s=1.0)
    limit.observe_overload(0.0)
    for t in (0.1, 0.5, 0.9):
        assert not limit.observe_overload(t)
    assert limit.current == 10
    limit.observe_overload(1.0)
    assert limit.current == 5


def test_successes_add_about_one_per_round_back_to_the_maximum() -> None:
    limit = AimdLimit(1, 10)
    limit.observe_overload(0.0)
    assert limit.current == 5
    for _ in range(4):  # 1/5 + 1/5.2 + ... is still short of 6 after four
        limit.observe_success(0.01, 10.0)
    assert limit.current == 5
    for _ in range(2):
        limit.observe_success(0.01, 10.0)
    assert limit.current == 6
    for _ in range(100):
        limit.observe_success(0.01, 10.0)
    assert limit.current == 10


def test_never_leaves_its_bounds() -> None:
    limit = AimdLimit(3, 10)
    for t in range(20):
        limit.observe_overload(float(t * 2))
    assert limit.current == 3


def test_slower_than_the_latency_target_counts_as_overload() -> None:
    limit = AimdLimit(1, 10, latency_target_s=0.5)
    assert not limit.observe_success(0.4, 0.0)
    assert limit.observe_success(0.9, 0.0)
    assert limit.current == 5


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        AimdLimit(5, 4)
