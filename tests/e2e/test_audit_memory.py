"""The audit's memory follows bytes, not object counts: 100 Pods of about 1 MiB each.

Tenants decide how large their objects are. The background pass runs in a child process
under the chart's memory limit (256 MiB); a pass that held a whole page of 500 objects,
as raw JSON and parsed, needed about 3 MiB per 1 MiB object, so some 70 large objects
killed it. Here 100 Pods carrying a 1 MiB environment variable each are created in the
real apiserver and one pass runs the way the leader's child runs it (``Auditor.run_pass``
in a process of its own); its peak memory above what it held before the pass must stay
under :data:`BOUND_MB`. The figure is printed (``-s``) for the README's benchmark table.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.support.controlplane.plane import ControlPlane
from tests.support.namespaces import create_namespace, delete_namespaces
from tests.support.scenario import TEAM_A, WS

pytestmark = pytest.mark.e2e

OBJECTS = 100
OBJECT_BYTES = 1024 * 1024
# What the pass may need above the child's memory before it: a few objects in flight
# (each about twice its JSON once parsed) and the interpreter's slack.
BOUND_MB = 64

# Run in a fresh interpreter so the peak is the pass's own (VmHWM reset before it).
CHILD = """
import json, sys
from pathlib import Path
from webhook.clients.kube import load_api_client
from webhook.leader.audit.passes import Auditor
from webhook.settings import read_config
from policy.snapshot import Snapshot

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

api = load_api_client(sys.argv[1])
snapshot = Snapshot.from_config(read_config(None))
auditor = Auditor(api, report_format=None)
Path("/proc/self/clear_refs").write_text("5")
before = status("VmRSS")
result = auditor.run_pass(snapshot)
print(json.dumps({"audited": result.audited, "extra_mb": status("VmHWM") - before}))
"""


def large_pod(name: str) -> dict[str, object]:
    container = {
        "name": "app",
        "image": TEAM_A,
        "env": [{"name": "BLOB", "value": "b" * OBJECT_BYTES}],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [container]},
    }


@pytest.fixture(scope="module")
def large_pods(control_plane: ControlPlane, api_client: client.ApiClient) -> Iterator[str]:
    namespace = create_namespace(api_client, {WS: "101"})
    try:
        with control_plane.http_client(timeout=60) as http:
            for n in range(OBJECTS):
                created = http.post(
                    f"/api/v1/namespaces/{namespace}/pods", json=large_pod(f"big-{n}")
                )
                assert created.status_code == 201, created.text[:500]
        yield namespace
    finally:
        delete_namespaces(api_client, [namespace])


def test_an_audit_pass_over_a_hundred_one_mib_pods_stays_within_its_memory_bound(
    control_plane: ControlPlane, large_pods: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(control_plane.kubeconfig)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\naudit pass over {OBJECTS} Pods of 1 MiB: +{figures['extra_mb']:.1f} MB peak RSS")

    assert figures["audited"] >= OBJECTS
    assert figures["extra_mb"] < BOUND_MB
