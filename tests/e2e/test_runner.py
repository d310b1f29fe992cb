"""``python -m tests.support.controlplane`` starts a usable control plane and never leaks one.

It also answers to its first name, ``python -m tests.e2e.controlplane``, which the README
documented before the control plane moved to ``tests/support``.

Leaked apiservers hold ports, CPU and memory on a 2-core machine and make the next run
flaky, so both exits are tested: a polite SIGTERM, and a SIGKILL of the runner, after which
the binaries must die with it (``setpriv --pdeathsig``) because nothing else can stop them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support.controlplane.build import BINARIES
from tests.support.procfs import pids_using, wait_gone

REPO = Path(__file__).resolve().parents[2]
READY = re.compile(
    r"control plane ready in [\d.]+s: (?P<server>https://127\.0\.0\.1:\d+) "
    r"\(logs in (?P<workdir>\S+)\); export KUBECONFIG=(?P<kubeconfig>\S+)$"
)


@dataclass
class Runner:
    """A running ``python -m tests.support.controlplane`` and what its ready line said."""

    process: subprocess.Popen[str]
    server: str
    workdir: Path
    kubeconfig: Path


@pytest.fixture
def runner(control_plane_binaries: Path, tmp_path: Path) -> Iterator[Runner]:
    """Start the runner on the already built binaries; kill whatever is left afterwards."""
    env = {**os.environ, "SPACEGATE_CONTROLPLANE_CACHE": str(control_plane_binaries.parent)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.controlplane", "--kubeconfig", str(tmp_path / "kc")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:  # the first output line is the ready line, or the error
        lines.append(line)
        match = READY.search(line.strip())
        if match:
            break
    else:
        process.wait()
        pytest.fail(f"runner exited with {process.returncode} before ready:\n{''.join(lines)}")
    workdir = Path(match["workdir"])
    try:
        yield Runner(process, match["server"], workdir, Path(match["kubeconfig"]))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in pids_using(workdir):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize("module", ["tests.support.controlplane", "tests.e2e.controlplane"])
def test_the_runner_answers_to_both_its_names_and_requires_a_kubeconfig_path(module: str) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    helped = run("--help")
    assert helped.returncode == 0, helped.stderr
    assert "Run the e2e control plane by hand" in helped.stdout
    assert "--kubeconfig" in helped.stdout
    missing = run()
    assert missing.returncode == 2
    assert "the following arguments are required: --kubeconfig" in missing.stderr


@pytest.mark.e2e
def test_the_runner_writes_a_kubeconfig_for_its_server_and_sigterm_stops_everything(
    runner: Runner, tmp_path: Path
) -> None:
    assert runner.kubeconfig == tmp_path / "kc"
    kubeconfig = yaml.safe_load(runner.kubeconfig.read_text())
    assert kubeconfig["clusters"][0]["cluster"]["server"] == runner.server
    pids = pids_using(runner.workdir)
    assert len(pids) == len(BINARIES)

    runner.process.send_signal(signal.SIGTERM)

    assert runner.process.wait(timeout=60) == 0
    assert wait_gone(pids) == set()
    assert not runner.workdir.exists()


@pytest.mark.e2e
def test_a_killed_runner_takes_its_control_plane_with_it(runner: Runner) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) for the parent-death signal")
    pids = pids_using(runner.workdir)
    assert len(pids) == len(BINARIES)

    runner.process.kill()
    runner.process.wait()

    assert wait_gone(pids, timeout=10) == set()
