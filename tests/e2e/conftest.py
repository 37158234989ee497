"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def prefix() -> Iterator[Path]:
    """The nginx prefix: a 0755 directory whose parents www-data can all search.

    The workers (www-data) open logs/body/body.log by path, so owning logs/body is not enough:
    every directory above it needs o+x. pytest's own tmp dirs are 0700, hence a separate dir.
    """
    path = Path(tempfile.mkdtemp(prefix="llm-nginx-e2e-"))
    try:
        path.chmod(0o755)
        if os.geteuid() == 0:
            closed = [p for p in path.parents if not p.stat().st_mode & 0o001]
            assert not closed, f"www-data cannot search {closed}: point TMPDIR elsewhere"
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
