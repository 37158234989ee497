"""Shared test helpers: paths to the repo, the shared fixtures and the example logs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "recorded"
EXAMPLES = REPO / "examples" / "logs"

# Property tests: under CI the same examples every run, so that a red CI means a regression and
# not a new random draw; anywhere else every run explores new examples (what found the last
# hostile-input bug). HYPOTHESIS_PROFILE=explore or =ci chooses explicitly.
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore")
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "explore")
)


@pytest.fixture
def repo() -> Path:
    return REPO
