"""Shared test helpers: where the repo and the shared test data live."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_TESTDATA = REPO.parent / "shared" / "testdata"
EXAMPLES = REPO / "examples"


@pytest.fixture
def shared_testdata() -> Path:
    """The upstream vectors beside the repo; tests that need them skip when absent."""
    if not SHARED_TESTDATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_TESTDATA}")
    return SHARED_TESTDATA
