"""Fixtures for the end-to-end tests: one real control plane per session.

Start-up costs seconds and a cold build of the binaries costs minutes, so:

- the binaries are built in ``pytest_collection_finish``, before any test runs, only if an
  ``e2e`` test was selected. A build inside a fixture would count against the first test's
  ``timeout`` (pytest-timeout, 120 s in pyproject.toml) and be killed half way;
- a build failure is kept and re-raised by the ``control_plane`` fixture as a *failure* with
  the build's message (for example "no `go` command ... install Go from ..."): an e2e suite
  that silently skips when its tools are missing tests nothing;
- ``SPACEGATE_SKIP_E2E=1`` is the explicit opt-out: no build, and every e2e test skips;
- the control plane is session-scoped and shared; tests isolate themselves by namespace.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.support.controlplane.build import BuildError, ensure_binaries
from tests.support.controlplane.plane import ControlPlane
from tests.support.manifests import delete_manifests
from tests.support.namespaces import Namespaces, create_namespace
from tests.support.policy_reports import install_policy_report_crd
from tests.support.scenario import WS
from tests.support.spacegate import SpacegateProcess, running_spacegate
from tests.support.webhooks import (
    apply_webhooks,
    chart_webhooks,
    delete_webhooks,
    wait_until_enforced,
)

E2E_DIR = Path(__file__).resolve().parent
SKIP_ENV = "SPACEGATE_SKIP_E2E"

_BINARIES = pytest.StashKey[Path | BuildError]()


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker here because pyproject.toml belongs to the rest of the project."""
    config.addinivalue_line(
        "markers",
        "e2e: runs against a real etcd + kube-apiserver + kube-controller-manager "
        f"(built with Go on first use; {SKIP_ENV}=1 skips)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test`` runs ``-n 2 --dist loadgroup``) every e2e test goes
    to one worker, in order, sharing one control plane: the other worker runs the unit
    tests meanwhile. Two control planes on two cores would slow every e2e test instead."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.xdist_group("e2e"))


def _skipping() -> bool:
    return os.environ.get(SKIP_ENV) == "1"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the binaries before the first test if any selected test needs them."""
    if _skipping() or not any(item.get_closest_marker("e2e") for item in session.items):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")

    def progress(message: str) -> None:
        if reporter is not None:
            reporter.write_line(f"[e2e control plane] {message}")

    try:
        session.config.stash[_BINARIES] = ensure_binaries(progress)
    except BuildError as exc:
        session.config.stash[_BINARIES] = exc


@pytest.fixture(scope="session")
def control_plane_binaries(pytestconfig: pytest.Config) -> Path:
    """The directory with etcd, kube-apiserver and kube-controller-manager."""
    if _skipping():
        pytest.skip(f"{SKIP_ENV}=1")
    built = pytestconfig.stash.get(_BINARIES, None)
    if built is None:  # not marked e2e, so the collection hook did not build
        try:
            built = ensure_binaries()
        except BuildError as exc:
            built = exc
    if isinstance(built, BuildError):
        pytest.fail(str(built), pytrace=False)
    return built


@pytest.fixture(scope="session")
def control_plane(control_plane_binaries: Path) -> Iterator[ControlPlane]:
    """A running control plane, shared by the session and stopped at its end."""
    with ControlPlane(control_plane_binaries) as plane:
        yield plane


@pytest.fixture(scope="session")
def api_client(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    """An admin ``kubernetes`` ApiClient loaded from the control plane's kubeconfig file."""
    api = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(control_plane.kubeconfig)
    )
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def spacegate(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SpacegateProcess]:
    """spacegate serving both webhooks as a local process, in live mode on the control plane."""
    with running_spacegate(control_plane, tmp_path_factory.mktemp("spacegate")) as process:
        yield process


@pytest.fixture(scope="session")
def webhooks(api_client: client.ApiClient, spacegate: SpacegateProcess) -> Iterator[None]:
    """The chart's webhook configurations (failurePolicy Fail) pointing at ``spacegate``, as
    the chart renders them for its config (bindings from the config only: no binding entry)."""
    values = {"config": {"bindings": {"source": "config"}}}
    apply_webhooks(api_client, chart_webhooks(spacegate.url, spacegate.ca_pem, values=values))
    probe = create_namespace(api_client, {WS: "101"})
    wait_until_enforced(api_client, probe)
    yield
    delete_webhooks(api_client)


@pytest.fixture(scope="session")
def policy_report_crd(control_plane: ControlPlane) -> Iterator[dict[str, object]]:
    """The chart's PolicyReport CRD (``policyReports.installCRD``) applied through the API and
    served; deleted at the end of the session (with every PolicyReport)."""
    crd = install_policy_report_crd(control_plane)
    yield crd
    delete_manifests(control_plane, [crd])


@pytest.fixture
def namespaces(api_client: client.ApiClient) -> Iterator[Namespaces]:
    """Namespaces a test makes, deleted after it."""
    made = Namespaces(api_client)
    yield made
    made.delete_all()
