"""Fixtures for the provisioning tests: the registry fixtures of the source tests, and logs.

The Harbor fake and the credential files are the ones the registry source tests use
(``tests/webhook/live/sources/conftest.py``); the robot client's logs and the HTTP client's
retry lines are captured so tests can assert that no secret reaches them.
"""

from __future__ import annotations

import logging

import pytest

from tests.webhook.live.sources.conftest import (  # noqa: F401 - fixtures, used by name
    harbor,
    harbor_server,
    registry_config,
)


@pytest.fixture(autouse=True)
def _capture_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Capture everything the robot client and the HTTP client log."""
    caplog.set_level(logging.DEBUG, logger="webhook.leader.provisioning")
    caplog.set_level(logging.DEBUG, logger="webhook.clients")
