"""The `stack` fixture: a DamStack per test, torn down whatever the test's outcome."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dam_common.settings import CommonSettings
from tests.support.stack import DamStack


@pytest.fixture
def stack(settings: CommonSettings, tmp_path: Path) -> Iterator[DamStack]:
    dam = DamStack(settings.redis_url, settings.key_prefix, tmp_path)
    try:
        yield dam
    finally:
        dam.stop_all()
