"""Faults under load on a control plane of its own: no refused image ever gets in.

``bench/chaos.py --short`` starts its own control plane (it restarts the apiserver, which
the session's shared one must not suffer), three replicas behind HAProxy and the leader's
work, sends a steady load of creates and injects a subset of the faults — kill -9 of a
replica and of the leader, a Harbor outage longer than ``maxStaleness``, a namespace
relabel, a binding object change, an apiserver restart. It exits 1 on any wrongly admitted
create, any create refused by the policy that the world allows, a wrong pull-secret patch,
a convergence past its bound or a foreign Secret touched; this test also reads its figures,
so a run that sent nothing cannot pass.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.chaos.haproxy import haproxy_unavailable

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_under_kills_outages_relabels_and_restarts_no_refused_image_is_admitted(
    control_plane_binaries: Path, tmp_path: Path
) -> None:
    reason = haproxy_unavailable()
    if reason:
        pytest.fail(reason, pytrace=False)  # an e2e suite that skips its tools tests nothing
    figures = tmp_path / "chaos.json"
    run = subprocess.run(
        [sys.executable, "bench/chaos.py", "--short", "--json", str(figures)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    output = run.stdout + run.stderr[-4000:]
    assert run.returncode == 0, output

    result = json.loads(figures.read_text())
    assert result["creates"] >= 100, output
    rows = {row["fault"]: row for row in result["rows"]}
    assert set(rows) >= {"kill -9 leader", "apiserver restart", "namespace relabel"}, output
    for row in rows.values():
        assert row["creates"] > 0, output
        assert row["wrongly_admitted"] == 0, output
        assert row["converged_s"] is not None, output
