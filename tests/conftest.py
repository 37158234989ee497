"""Shared test helpers: paths to the repo, the shared fixtures and the example logs."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "recorded"
EXAMPLES = REPO / "examples" / "logs"


@pytest.fixture
def repo() -> Path:
    return REPO
