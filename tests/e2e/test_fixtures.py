"""Without Go the e2e tests fail loudly, unless SPACEGATE_SKIP_E2E=1 opts out.

A suite that skips when its tools are missing reports green while testing nothing, so the
default must be a failure that says how to get Go. These run a nested pytest on one e2e test
with an empty binaries cache and a ``go`` that does not exist (``SPACEGATE_GO``); they need
neither Go nor the binaries themselves.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ONE_E2E_TEST = (
    "tests/e2e/test_controlplane.py::"
    "test_the_apiserver_answers_readyz_to_an_anonymous_client_that_trusts_only_the_test_ca"
)


def _pytest_without_go(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "SPACEGATE_CONTROLPLANE_CACHE": str(tmp_path / "empty-cache"),
        "SPACEGATE_GO": str(tmp_path / "no-such-go"),
    }
    environment.pop("SPACEGATE_SKIP_E2E", None)
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", ONE_E2E_TEST, "-q", "-p", "no:cacheprovider"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_go_the_e2e_tests_error_with_how_to_install_it(tmp_path: Path) -> None:
    result = _pytest_without_go(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "1 error" in output
    assert "skipped" not in output
    assert "Cannot build the e2e control plane" in output
    assert "https://go.dev/dl/" in output


def test_spacegate_skip_e2e_skips_them_instead(tmp_path: Path) -> None:
    result = _pytest_without_go(tmp_path, SPACEGATE_SKIP_E2E="1")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "1 skipped" in output
