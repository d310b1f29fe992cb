"""Live mode end to end: the real sources against the Harbor fake and the Kubernetes fake.

Registry outages are simulated with :class:`Gate`, a TCP forwarder on a fixed port that the
test opens and closes, so the configured URL stays the same while the registry behind it
goes down (connection refused) and comes back. Staleness is driven by an injected clock;
waits are bounded polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from policy.config import Config, Registry, load_config
from policy.decision import decide
from tests.fakes.harbor import ADMIN_PASSWORD, ADMIN_USER, HarborFake
from tests.fakes.kubernetes import FakeKubernetes
from webhook.live.mode import open_live_state
from webhook.live.refresher import Refresher
from webhook.live.sources import SpaceSource
from webhook.live.sources.factory import make_source

WS = "workspace.ghippo.io/id"


# --------------------------------------------------------------------------- helpers


class FakeClock:
    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


class Gate:
    """A TCP forwarder to ``target_port`` on a port of its own that stays the same while
    the test closes it (connection refused) and opens it again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._sock: socket.socket | None = self._bind(0)  # bound, not listening: refused
        self.port: int = self._sock.getsockname()[1]
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @staticmethod
    def _bind(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def open(self) -> None:
        sock = self._sock or self._bind(self.port)
        self._sock = None
        self._server = await asyncio.start_server(self._forward, sock=sock)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for writer in list(self._writers):
                writer.close()
            await server.wait_closed()
        if self._sock is None:
            self._sock = self._bind(self.port)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(up_writer)

    def dispose(self) -> None:
        if self._sock is not None:
            self._sock.close()


def quick_sources(registry: Registry) -> SpaceSource:
    """Real sources with test-sized retries, so a failure is reported in milliseconds."""
    return make_source(registry, retries=1, backoff=0.01, timeout=2.0)


def harbor_config(url: str, *, extra: str = "", credentials: str = "") -> Config:
    return load_config(
        f"""
policy: {{maxStaleness: 10m}}
registries:
  - name: harbor
    type: harbor
    url: {url}
    hosts: [harbor.example.com]
    refreshInterval: 50ms
{credentials}
bindings:
  - {{registry: harbor, space: team-a, workspaces: ["101"]}}
namespaces:
  team-a-dev: "101"
{extra}
""",
        "test.yaml",
    )


def admitted(state: Refresher, namespace: str, image: str) -> bool:
    spec = {"containers": [{"name": "app", "image": image}]}
    return decide(state.snapshot, namespace, spec).allowed


async def until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {what}")
        await asyncio.sleep(0.01)


def write_credentials(folder: Path, user: str, password: str) -> str:
    (folder / "username").write_text(user + "\n")
    (folder / "password").write_text(password + "\n")
    return (
        f"    credentials: {{usernameFile: {folder / 'username'}, "
        f"passwordFile: {folder / 'password'}}}"
    )


@pytest.fixture
def harbor() -> Iterator[HarborFake]:
    with HarborFake() as fake:
        fake.add_project("library", public=True)
        fake.add_project("team-a", public=False)
        yield fake


@contextlib.asynccontextmanager
async def gate_to(port: int, *, open_now: bool = True) -> AsyncIterator[Gate]:
    gate = Gate(port)
    if open_now:
        await gate.open()
    try:
        yield gate
    finally:
        await gate.close()
        gate.dispose()


def harbor_port(harbor: HarborFake) -> int:
    return int(harbor.url.rsplit(":", 1)[1])


# --------------------------------------------------------------------------- Harbor outages


def test_a_harbor_down_at_start_is_not_ready_and_becomes_ready_once_it_answers(
    harbor: HarborFake, tmp_path: Path
) -> None:
    credentials = write_credentials(tmp_path, ADMIN_USER, ADMIN_PASSWORD)

    async def scenario() -> None:
        async with gate_to(harbor_port(harbor), open_now=False) as gate:
            config = harbor_config(gate.url, credentials=credentials)
            async with open_live_state(config, kube=False, source_factory=quick_sources) as state:
                await until(lambda: state.status()[0].failures >= 1, what="a failed listing")
                ready, reason = state.readiness()
                assert not ready
                assert "harbor" in reason
                assert "connection failed" in reason
                assert not admitted(state, "team-a-dev", "harbor.example.com/library/nginx")

                await gate.open()
                await until(lambda: state.readiness()[0], what="ready after the registry is up")
                assert admitted(state, "team-a-dev", "harbor.example.com/library/nginx")
                assert admitted(state, "team-a-dev", "harbor.example.com/team-a/app")
                assert not admitted(state, "sandbox", "harbor.example.com/team-a/app")

    asyncio.run(scenario())


def test_a_harbor_going_down_after_the_first_sync_keeps_decisions_and_is_stale_later(
    harbor: HarborFake, tmp_path: Path
) -> None:
    credentials = write_credentials(tmp_path, ADMIN_USER, ADMIN_PASSWORD)
    clock = FakeClock()

    async def scenario() -> None:
        async with gate_to(harbor_port(harbor)) as gate:
            config = harbor_config(gate.url, credentials=credentials)
            async with open_live_state(
                config, kube=False, source_factory=quick_sources, clock=clock
            ) as state:
                await until(lambda: state.readiness()[0], what="first sync")
                await gate.close()
                failures = state.status()[0].failures
                await until(lambda: state.status()[0].failures >= failures + 2, what="failures")

                clock.now += 599
                assert state.readiness()[0]
                assert admitted(state, "team-a-dev", "harbor.example.com/team-a/app")
                clock.now += 2
                ready, reason = state.readiness()
                assert not ready
                assert "stale" in reason
                assert admitted(state, "team-a-dev", "harbor.example.com/team-a/app")
                assert not admitted(state, "sandbox", "harbor.example.com/team-a/app")

                await gate.open()
                await until(lambda: state.readiness()[0], what="fresh again")

    asyncio.run(scenario())


def test_harbor_answering_500_keeps_the_last_known_good_spaces(
    harbor: HarborFake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    credentials = write_credentials(tmp_path, ADMIN_USER, ADMIN_PASSWORD)

    async def scenario() -> None:
        config = harbor_config(harbor.url, credentials=credentials)
        async with open_live_state(config, kube=False, source_factory=quick_sources) as state:
            await until(lambda: state.readiness()[0], what="first sync")
            version = state.snapshot.version
            harbor.remove_project("team-a")
            harbor.faults.fail_next(1000, 500)
            with caplog.at_level(logging.WARNING, logger="webhook.live.poller"):
                await until(lambda: state.status()[0].failures >= 2, what="failures")
            assert state.snapshot.version == version
            assert admitted(state, "team-a-dev", "harbor.example.com/team-a/app")
            assert any("500" in r.getMessage() for r in caplog.records)

            harbor.faults.clear()
            await until(lambda: state.status()[0].failures == 0, what="recovery")
            await until(
                lambda: not admitted(state, "team-a-dev", "harbor.example.com/team-a/app"),
                what="the removed project is gone",
            )

    asyncio.run(scenario())


def test_harbor_slower_than_the_timeout_is_a_failure_and_reads_never_wait(
    harbor: HarborFake, tmp_path: Path
) -> None:
    credentials = write_credentials(tmp_path, ADMIN_USER, ADMIN_PASSWORD)

    async def scenario() -> None:
        config = harbor_config(harbor.url, credentials=credentials)
        async with open_live_state(
            config, kube=False, source_factory=quick_sources, fetch_timeout=0.3
        ) as state:
            await until(lambda: state.readiness()[0], what="first sync")
            harbor.faults.delay_next(50, seconds=1.0)
            await until(lambda: bool(harbor.faults.pending() < 50), what="a slow request")
            started = time.perf_counter()
            snapshot = state.snapshot
            state.readiness()
            assert time.perf_counter() - started < 0.05
            assert snapshot.registries["harbor"].space_public("team-a") is False
            await until(
                lambda: "no answer within 300ms" in (state.status()[0].last_error or ""),
                what="timeout reported",
            )
            assert admitted(state, "team-a-dev", "harbor.example.com/team-a/app")
            harbor.faults.clear()

    asyncio.run(scenario())


def test_wrong_harbor_credentials_are_logged_clearly_without_the_password(
    harbor: HarborFake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    password = "s3cret-Wr0ng-pa55"
    credentials = write_credentials(tmp_path, ADMIN_USER, password)

    async def scenario() -> None:
        config = harbor_config(harbor.url, credentials=credentials)
        with caplog.at_level(logging.DEBUG):
            async with open_live_state(config, kube=False, source_factory=quick_sources) as state:
                await until(lambda: state.status()[0].failures >= 1, what="a failure")
                assert not state.readiness()[0]

    asyncio.run(scenario())
    failures = [r.getMessage() for r in caplog.records if r.name == "webhook.live.poller"]
    assert failures
    assert "'harbor'" in failures[0]
    assert "401" in failures[0]
    assert password not in caplog.text
    import base64

    assert base64.b64encode(f"{ADMIN_USER}:{password}".encode()).decode() not in caplog.text


def test_anonymous_harbor_access_sees_public_projects_only(harbor: HarborFake) -> None:
    async def scenario() -> None:
        config = harbor_config(harbor.url)
        async with open_live_state(config, kube=False, source_factory=quick_sources) as state:
            await until(lambda: state.readiness()[0], what="first sync")
            assert admitted(state, "team-a-dev", "harbor.example.com/library/nginx")
            # team-a is private: invisible to anonymous, so unknown, so denied.
            assert not admitted(state, "team-a-dev", "harbor.example.com/team-a/app")

    asyncio.run(scenario())


# --------------------------------------------------------------------------- namespaces


@pytest.fixture
def kube() -> Iterator[FakeKubernetes]:
    fake = FakeKubernetes()
    fake.create_namespace("team-a-dev", {WS: "101"})
    fake.create_namespace("sandbox", {})
    yield fake
    fake.stop()


def static_harbor() -> Config:
    return load_config(
        """
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    spaces: [{name: team-a, public: false}]
bindings:
  - {registry: harbor, space: team-a, workspaces: ["101"]}
namespaces:
  sandbox: "101"   # ignored: the cluster's labels win
"""
    )


def test_namespace_labels_from_the_cluster_decide_and_changes_apply_at_once(
    kube: FakeKubernetes,
) -> None:
    image = "harbor.example.com/team-a/app"

    async def scenario() -> None:
        async with open_live_state(static_harbor(), kube=True, api_client=kube.api_client) as state:
            await until(lambda: state.readiness()[0], what="namespaces listed")
            assert admitted(state, "team-a-dev", image)
            assert not admitted(state, "sandbox", image)

            kube.label_namespace("sandbox", {WS: "101"})
            await until(lambda: admitted(state, "sandbox", image), what="label applied")
            kube.create_namespace("team-a-new", {WS: "101"})
            await until(lambda: admitted(state, "team-a-new", image), what="new namespace")

    asyncio.run(scenario())


@pytest.mark.parametrize("expired_as_http", [False, True])
def test_a_dropped_or_expired_namespace_watch_recovers(expired_as_http: bool) -> None:
    image = "harbor.example.com/team-a/app"
    kube = FakeKubernetes(expired_as_http=expired_as_http)
    kube.create_namespace("team-a-dev", {WS: "101"})

    async def scenario() -> None:
        async with open_live_state(static_harbor(), kube=True, api_client=kube.api_client) as state:
            await until(lambda: state.readiness()[0], what="namespaces listed")
            assert await asyncio.to_thread(kube.wait_for_watches, 1, 5.0)

            kube.drop_watches()  # the connection breaks mid-stream
            kube.create_namespace("after-drop", {WS: "101"})
            await until(lambda: admitted(state, "after-drop", image), what="after a drop")

            assert await asyncio.to_thread(kube.wait_for_watches, 1, 5.0)
            kube.create_namespace("gap", {WS: "101"})
            kube.compact()  # history gone: resuming answers 410, only a relist recovers
            kube.drop_watches()
            await until(lambda: admitted(state, "gap", image), what="after a 410")
            await until(lambda: state.readiness()[0], what="current again")

    try:
        asyncio.run(scenario())
    finally:
        kube.stop()


def test_while_the_api_server_is_away_the_watches_are_not_current_and_the_gate_says_so() -> None:
    """Plain /readyz names the watch; the probe's form stays ready (every replica loses its
    watches at once when the apiserver restarts); a review's wait ends once it is back, with
    the snapshot holding what changed meanwhile."""
    image = "harbor.example.com/team-a/app"
    kube = FakeKubernetes()
    kube.create_namespace("team-a-dev", {WS: "101"})

    async def scenario() -> None:
        async with open_live_state(static_harbor(), kube=True, api_client=kube.api_client) as state:
            await until(lambda: state.readiness()[0], what="listed")
            assert await state.freshness.wait_current(1.0) == ()

            await asyncio.to_thread(kube.stop)
            await until(lambda: bool(state.freshness.not_current()), what="not current")
            ready, reason = state.readiness()
            assert not ready
            assert "the namespace watch is not current" in reason
            assert state.readiness(staleness=False)[0]
            behind = await state.freshness.wait_current(0.2)
            assert any("namespace" in why for why in behind)

            kube.label_namespace("team-a-dev", {WS: "102"})  # while nobody watches
            await asyncio.to_thread(kube.start)
            assert await state.freshness.wait_current(5.0) == ()
            assert not admitted(state, "team-a-dev", image), "decided on the new label at once"

    try:
        asyncio.run(scenario())
    finally:
        kube.stop()


def test_an_api_server_down_at_start_is_not_ready_until_it_answers() -> None:
    kube = FakeKubernetes(start=False)

    async def scenario() -> None:
        async with open_live_state(static_harbor(), kube=True, api_client=kube.api_client) as state:
            await asyncio.sleep(0.1)
            ready, reason = state.readiness()
            assert not ready
            assert "namespace" in reason
            await asyncio.to_thread(kube.start)
            kube.create_namespace("team-a-dev", {WS: "101"})
            await until(lambda: state.readiness()[0], timeout=10, what="listed")
            assert admitted(state, "team-a-dev", "harbor.example.com/team-a/app")

    try:
        asyncio.run(scenario())
    finally:
        kube.stop()


def test_without_a_kubernetes_api_the_static_namespace_map_is_used_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        with caplog.at_level(logging.WARNING, logger="webhook.live.mode"):
            async with open_live_state(static_harbor(), kube=False) as state:
                assert state.readiness()[0]
                assert admitted(state, "sandbox", "harbor.example.com/team-a/app")

    asyncio.run(scenario())
    assert any("static" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- config reload


def test_a_changed_config_file_applies_and_an_invalid_one_is_refused(
    harbor: HarborFake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    credentials = write_credentials(tmp_path, ADMIN_USER, ADMIN_PASSWORD)
    path = tmp_path / "config.yaml"

    def text(workspaces: str) -> str:
        return f"""
registries:
  - name: harbor
    type: harbor
    url: {harbor.url}
    hosts: [harbor.example.com]
    refreshInterval: 1h
{credentials}
bindings:
  - {{registry: harbor, space: team-a, workspaces: [{workspaces}]}}
namespaces:
  team-a-dev: "101"
  team-b-dev: "102"
"""

    path.write_text(text('"101"'))
    factory = functools.partial(
        open_live_state,
        config_path=str(path),
        kube=False,
        source_factory=quick_sources,
        poll_interval=0.02,
    )
    image = "harbor.example.com/team-a/app"

    async def scenario() -> None:
        config = load_config(path.read_text(), str(path))
        async with factory(config) as opened:
            assert isinstance(opened, Refresher)
            state = opened
            await until(lambda: state.readiness()[0], what="first sync")
            fetches = len(harbor.requests)
            assert not admitted(state, "team-b-dev", image)

            path.write_text(text('"101", "102"'))
            await until(lambda: admitted(state, "team-b-dev", image), what="reloaded")
            assert state.readiness()[0]
            assert len(harbor.requests) == fetches  # unchanged registry: not relisted

            def refusals() -> list[str]:
                return [
                    r.getMessage() for r in caplog.records if r.name == "webhook.live.config_watch"
                ]

            with caplog.at_level(logging.WARNING, logger="webhook.live.config_watch"):
                path.write_text(text('"101", "102"') + "surprise: true\n")
                await until(lambda: bool(refusals()), what="the refusal logged")
            assert "surprise: unknown key" in refusals()[0]
            assert "keeping the current config" in refusals()[0]
            assert admitted(state, "team-b-dev", image)

    asyncio.run(scenario())


def test_a_new_workspace_label_switches_the_namespace_watch_after_it_has_listed(
    kube: FakeKubernetes, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    base = """
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    spaces: [{name: team-a, public: false}]
bindings:
  - {registry: harbor, space: team-a, workspaces: ["101"]}
"""
    path.write_text(base)
    kube.create_namespace("relabelled", {"tenant": "101"})
    image = "harbor.example.com/team-a/app"
    factory = functools.partial(
        open_live_state,
        config_path=str(path),
        kube=True,
        api_client=kube.api_client,
        poll_interval=0.02,
    )

    async def scenario() -> None:
        async with factory(load_config(base)) as opened:
            assert isinstance(opened, Refresher)
            state = opened
            await until(lambda: state.readiness()[0], what="listed")
            assert admitted(state, "team-a-dev", image)
            assert not admitted(state, "relabelled", image)
            path.write_text("workspaceLabel: tenant\n" + base)
            await until(lambda: admitted(state, "relabelled", image), what="new label")
            assert not admitted(state, "team-a-dev", image)
            await until(lambda: state.readiness()[0], what="the new watch current")

    asyncio.run(scenario())


# --------------------------------------------------------------------------- Docker Registry


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Any]:
    from tests.fakes.registry import RealRegistry, real_registry_unavailable

    reason = real_registry_unavailable()
    if reason:
        pytest.skip(reason)
    with RealRegistry(tmp_path / "registry") as real:
        real.prefill(["apps/web", "apps/api", "tools/debug"])
        yield real


def registry_config(url: str, credentials: str) -> Config:
    return load_config(
        f"""
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    spaces: [{{name: library, public: true}}]
  - name: dr
    type: docker-registry
    url: {url}
    hosts: [registry.example.com:5000]
    refreshInterval: 50ms
{credentials}
"""
    )


def test_a_docker_registry_catalog_is_listed_but_its_outage_does_not_unready(
    registry: Any, tmp_path: Path
) -> None:
    credentials = write_credentials(tmp_path, registry.username, registry.password)

    async def scenario() -> None:
        async with gate_to(registry.port) as gate:
            config = registry_config(gate.url, credentials)
            async with open_live_state(config, kube=False, source_factory=quick_sources) as state:
                await until(lambda: state.status()[0].synced, what="catalog listed")
                assert dict(state.snapshot.registries["dr"].spaces) == {
                    "apps": True,
                    "tools": True,
                }
                await gate.close()
                failures = state.status()[0].failures
                await until(lambda: state.status()[0].failures > failures, what="a failure")
                assert state.readiness()[0]
                assert admitted(state, "any", "registry.example.com:5000/apps/web:1")

    asyncio.run(scenario())


def test_wrong_docker_registry_credentials_are_logged_without_the_password(
    registry: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-the-Pa55word"
    credentials = write_credentials(tmp_path, registry.username, wrong)

    async def scenario() -> None:
        config = registry_config(registry.url, credentials)
        with caplog.at_level(logging.DEBUG):
            async with open_live_state(config, kube=False, source_factory=quick_sources) as state:
                await until(lambda: state.status()[0].failures >= 1, what="a failure")

    asyncio.run(scenario())
    failures = [r.getMessage() for r in caplog.records if r.name == "webhook.live.poller"]
    assert "'dr'" in failures[0]
    assert "401" in failures[0]
    assert wrong not in caplog.text


# --------------------------------------------------------------------------- binding objects

BINDINGS = "/apis/spacegate.io/v1alpha1/registryspacebindings"


def binding(name: str, *workspaces: str) -> dict[str, Any]:
    return {
        "apiVersion": "spacegate.io/v1alpha1",
        "kind": "RegistrySpaceBinding",
        "metadata": {"name": name},
        "spec": {"registry": "harbor", "space": "team-a", "workspaces": list(workspaces)},
    }


def serve_bindings(kube: FakeKubernetes) -> None:
    kube.serve_resource("spacegate.io/v1alpha1", "registryspacebindings", "RegistrySpaceBinding")


def test_binding_objects_from_the_cluster_decide_and_changes_apply_at_once(
    kube: FakeKubernetes,
) -> None:
    image = "harbor.example.com/team-a/app"
    serve_bindings(kube)
    kube.label_namespace("sandbox", {WS: "102"})

    async def scenario() -> None:
        async with open_live_state(static_harbor(), kube=True, api_client=kube.api_client) as state:
            await until(lambda: state.readiness()[0], what="ready")
            assert not admitted(state, "sandbox", image)  # only the config's 101 so far

            kube.create_object(BINDINGS, "", binding("harbor-team-a", "102"))
            await until(lambda: admitted(state, "sandbox", image), what="bound by an object")
            assert admitted(state, "team-a-dev", image)  # the config's binding still counts

            kube.delete_object(BINDINGS, "", "harbor-team-a")
            await until(lambda: not admitted(state, "sandbox", image), what="unbound")

    asyncio.run(scenario())


def test_readiness_waits_for_the_first_list_of_binding_objects(kube: FakeKubernetes) -> None:
    serve_bindings(kube)
    kube.fail_next(3, status=503, path_prefix=BINDINGS)

    async def scenario() -> None:
        reasons: list[str] = []

        def ready() -> bool:
            ok, reason = state.readiness()
            reasons.append(reason)
            return ok

        async with open_live_state(static_harbor(), kube=True, api_client=kube.api_client) as state:
            await until(ready, timeout=10, what="listed after the failures")
            assert state.snapshot.binding_objects == {}
        waited = [r for r in reasons if "RegistrySpaceBinding" in r]
        assert waited, reasons
        first_list = "waiting for the first list of RegistrySpaceBinding objects (HTTP 503"
        assert any(first_list in r for r in waited), waited

    asyncio.run(scenario())


def test_without_the_crd_the_default_source_is_ready_with_the_config_s_bindings(
    kube: FakeKubernetes,
) -> None:
    async def scenario() -> None:
        async with open_live_state(static_harbor(), kube=True, api_client=kube.api_client) as state:
            await until(lambda: state.readiness()[0], what="ready")
            assert state.snapshot.binding_objects is None
            assert admitted(state, "team-a-dev", "harbor.example.com/team-a/app")

    asyncio.run(scenario())


def test_a_source_that_names_objects_is_not_ready_without_their_crd_and_says_why(
    kube: FakeKubernetes,
) -> None:
    config = load_config(
        "registries: [{name: harbor, type: harbor, url: https://harbor.example.com,"
        " spaces: [{name: team-a, public: false}]}]\nbindings: {source: objects}\n"
    )

    async def scenario() -> None:
        async with open_live_state(config, kube=True, api_client=kube.api_client) as state:
            await until(lambda: "not served" in state.readiness()[1], what="the reason")
            assert not state.readiness()[0]
            serve_bindings(kube)
            await until(lambda: state.readiness()[0], timeout=40, what="ready once served")

    asyncio.run(scenario())


def test_with_bindings_from_the_config_only_no_object_is_read(kube: FakeKubernetes) -> None:
    serve_bindings(kube)
    kube.create_object(BINDINGS, "", binding("x", "102"))
    config = load_config(
        "registries: [{name: harbor, type: harbor, url: https://harbor.example.com,"
        " spaces: [{name: team-a, public: false}]}]\nbindings: {source: config}\n"
    )

    async def scenario() -> None:
        async with open_live_state(config, kube=True, api_client=kube.api_client) as state:
            await until(lambda: state.readiness()[0], what="ready")
            assert state.snapshot.binding_objects is None
            assert not any(r.path.startswith(BINDINGS) for r in kube.requests)

    asyncio.run(scenario())
