"""Fixtures of the edge agent's tests: a published repository served over HTTP and an agent that syncs it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from edge_support import Setup


@pytest.fixture
def setup(tmp_path: Path, churn_champion: dict[str, str], serve_dir: Callable[[Path], str]) -> Setup:
    return Setup(tmp_path, churn_champion, serve_dir)
