"""spacegate follows namespace labels through the real apiserver's list and watch.

A namespace's workspace label decides which private spaces its pods may use, so a label
change must change spacegate's verdict within seconds, and no apiserver restart or etcd
compaction may leave spacegate deciding on labels that are no longer there.

Each check asks spacegate which workspace it believes a namespace is in: a pod whose image
names a space the registry does not have is refused in every workspace, and the refusal
says ``is not allowed in namespace NS (workspace 101)`` or ``(no workspace)``. Through the
apiserver that is a dry-run pod create; for a namespace that no longer exists (the apiserver
sends no reviews for it) or for a spacegate behind no webhook configuration, it is the
AdmissionReview the apiserver would send, posted to spacegate directly.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.controlplane.plane import ControlPlane
from tests.support.manifests import Api, pod
from tests.support.metrics import spacegate_metric
from tests.support.namespaces import create_namespace, delete_namespaces
from tests.support.reviews import pod_review
from tests.support.scenario import TEAM_A, TEAM_B, WS
from tests.support.spacegate import SpacegateProcess
from tests.support.waiting import eventually
from tests.support.webhooks import denial

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("webhooks")]

# A space registry "harbor" does not have: refused whatever the workspace, with the
# workspace spacegate sees in the message.
PROBE = "harbor.demo.local/no-such-space/probe:1"
NO_WORKSPACE = "none"
# A watch event reaches spacegate in milliseconds; this is for a loaded 2-core machine.
WITHIN = 30.0
# Reconnecting after an apiserver restart includes the reflector's backoff (up to 30 s).
RECONNECT_WITHIN = 60.0


@pytest.fixture
def core(api_client: client.ApiClient) -> Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def namespaces(api_client: client.ApiClient) -> Iterator[list[str]]:
    """Names of the namespaces a test creates; those still there are deleted afterwards."""
    created: list[str] = []
    yield created
    delete_namespaces(api_client, created)


def _workspace_in(message: str, namespace: str) -> str | None:
    """The workspace a refusal says ``namespace`` is in (NO_WORKSPACE), None if it says none."""
    found = re.search(
        rf"in namespace {re.escape(namespace)} \((?:workspace (\S+)|no workspace)\)", message
    )
    if found is None:
        return None
    return found.group(1) or NO_WORKSPACE


def _seen_through_the_apiserver(core: Api, namespace: str) -> str | None:
    message = denial(
        lambda: core.create_namespaced_pod(namespace, pod("probe", PROBE), dry_run="All")
    )
    return _workspace_in(message, namespace)


def _review(process: SpacegateProcess, namespace: str, image: str) -> dict[str, Any]:
    """spacegate's answer to the AdmissionReview the apiserver sends for a dry-run pod create."""
    review = pod_review(namespace, image)
    with process.client() as http:
        response = http.post("/validate", json=review)
    response.raise_for_status()
    answer: dict[str, Any] = response.json()["response"]
    return answer


def _seen_by(process: SpacegateProcess, namespace: str) -> str | None:
    answer = _review(process, namespace, PROBE)
    assert not answer["allowed"], f"spacegate admitted {PROBE} in {namespace}"
    return _workspace_in(answer["status"]["message"], namespace)


def _until(seen: Callable[[], str | None], expected: str, what: str, timeout: float) -> None:
    """Wait until ``seen()`` is ``expected``; on timeout say what spacegate saw last."""
    last: list[str | None] = [None]

    def check() -> bool:
        last[0] = seen()
        return last[0] == expected

    try:
        eventually(check, what, timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; spacegate last saw {last[0]!r}") from None


def _admitted(core: Api, namespace: str, image: str) -> bool:
    try:
        core.create_namespaced_pod(namespace, pod("app", image), dry_run="All")
    except ApiException:
        return False
    return True


def _relabel(core: Api, namespace: str, workspace: str | None) -> None:
    core.patch_namespace(namespace, {"metadata": {"labels": {WS: workspace}}})


def _gone(core: Api, namespace: str) -> bool:
    try:
        core.read_namespace(namespace)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


# --------------------------------------------------------------------------- labels


def test_labelling_relabelling_and_deleting_a_namespace_changes_spacegates_verdict_in_seconds(
    api_client: client.ApiClient,
    core: Api,
    spacegate: SpacegateProcess,
    namespaces: list[str],
) -> None:
    namespace = create_namespace(api_client, {})
    namespaces.append(namespace)
    seen = lambda: _seen_through_the_apiserver(core, namespace)  # noqa: E731
    _until(seen, NO_WORKSPACE, "spacegate to see the new namespace", WITHIN)
    assert not _admitted(core, namespace, TEAM_A)

    _relabel(core, namespace, "101")

    _until(seen, "101", "spacegate to see the namespace join workspace 101", WITHIN)
    assert _admitted(core, namespace, TEAM_A)
    assert not _admitted(core, namespace, TEAM_B)

    _relabel(core, namespace, "102")

    _until(seen, "102", "spacegate to see the namespace move to workspace 102", WITHIN)
    assert _admitted(core, namespace, TEAM_B)
    assert not _admitted(core, namespace, TEAM_A)

    core.delete_namespace(namespace)
    eventually(lambda: _gone(core, namespace), f"the namespace controller to remove {namespace}")

    # The apiserver sends no reviews for a namespace that does not exist; ask spacegate
    # directly: it has forgotten the workspace.
    _until(lambda: _seen_by(spacegate, namespace), NO_WORKSPACE, "spacegate to forget it", WITHIN)


# --------------------------------------------------------------------------- restarts


def test_a_label_change_made_after_an_apiserver_restart_is_seen(
    api_client: client.ApiClient,
    control_plane: ControlPlane,
    core: Api,
    spacegate: SpacegateProcess,
    namespaces: list[str],
) -> None:
    namespace = create_namespace(api_client, {WS: "101"})
    namespaces.append(namespace)
    seen = lambda: _seen_through_the_apiserver(core, namespace)  # noqa: E731
    _until(seen, "101", "spacegate to see the namespace in workspace 101", WITHIN)

    control_plane.restart_apiserver()
    _relabel(core, namespace, "102")

    _until(seen, "102", "spacegate's watch to resume and see the relabel", RECONNECT_WITHIN)
    assert _admitted(core, namespace, TEAM_B)


def test_after_its_watch_was_cut_spacegate_relists_and_sees_what_changed_while_it_was_away(
    api_client: client.ApiClient,
    control_plane: ControlPlane,
    core: Api,
    namespaces: list[str],
    tmp_path: Path,
) -> None:
    """Changes made while spacegate's watch was down, then compacted away, come from a relist.

    A dedicated spacegate is frozen (SIGSTOP) so its watch cannot follow. The apiserver
    restart cuts that watch, so nothing that happens next reaches spacegate's socket; the
    changes are then made and etcd is compacted past them. When spacegate resumes, its cut
    watch makes it not current and it relists (it never resumes from a resourceVersion after
    a failure; one from before the compaction would get 410 Gone): only that fresh list can
    tell it about the relabel, the deletion and the new namespace.
    """
    process = SpacegateProcess(control_plane, tmp_path)
    try:
        process.start()
        kept = create_namespace(api_client, {WS: "101"})
        relabelled = create_namespace(api_client, {WS: "101"})
        deleted = create_namespace(api_client, {WS: "102"})
        namespaces.extend([kept, relabelled, deleted])
        for name, workspace in ((kept, "101"), (relabelled, "101"), (deleted, "102")):
            _until(partial(_seen_by, process, name), workspace, f"spacegate to see {name}", WITHIN)
        pid = process.pid

        os.kill(pid, signal.SIGSTOP)
        try:
            control_plane.restart_apiserver()
            _relabel(core, relabelled, "102")
            core.delete_namespace(deleted)
            added = create_namespace(api_client, {WS: "101"})
            namespaces.append(added)
            eventually(
                lambda: _gone(core, deleted), f"the namespace controller to remove {deleted}"
            )
            control_plane.compact_etcd()
        finally:
            os.kill(pid, signal.SIGCONT)

        expected = {kept: "101", relabelled: "102", deleted: NO_WORKSPACE, added: "101"}
        for name, workspace in expected.items():
            _until(
                partial(_seen_by, process, name),
                workspace,
                f"spacegate to see {name} in {workspace}",
                RECONNECT_WITHIN,
            )

        # It got there through a relist, not a watch replaying what it missed: the cut
        # watch made it not current, and it never resumed from the compacted version.
        def relisted() -> bool:
            log = process.log.read_text(errors="replace")  # the log is flushed in batches
            return "namespace mirror is not current" in log and log.count("listed ") >= 2

        eventually(relisted, "a relist in spacegate's log", 10)
        assert "watch expired" not in process.log.read_text(errors="replace")
        # And what it knows is what a fresh list says: one entry per namespace.
        eventually(
            lambda: (
                spacegate_metric(process, "spacegate_namespaces")
                == len(core.list_namespace().items)
            ),
            "spacegate_namespaces to equal the number of namespaces listed now",
            WITHIN,
        )
        # The shared spacegate came through the same restart and compaction.
        _until(
            lambda: _seen_through_the_apiserver(core, added),
            "101",
            "the shared spacegate to see the namespace added meanwhile",
            RECONNECT_WITHIN,
        )
    finally:
        process.stop()
