"""Fixtures for the registry source tests: live fakes, the real registry, config objects.

The servers are session-scoped (starting the real registry costs ~0.1 s, a bcrypt htpasswd
~0.05 s) and reset before each test, so every test starts from an empty Harbor or catalog.
Sources are built with millisecond backoff so retry tests take milliseconds, not seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from policy.config import Credentials, Registry, RegistryType
from tests.fakes.harbor import HarborFake
from tests.fakes.registry import RealRegistry, TokenRegistryFake, real_registry_unavailable
from webhook.clients.errors import SourceError
from webhook.live.sources import SpaceSource

FAST: dict[str, Any] = {"backoff": 0.001, "timeout": 2.0}


class RegistryFactory(Protocol):
    def __call__(
        self,
        url: str,
        type: RegistryType = "harbor",
        username: str | None = None,
        password: str | None = None,
        *,
        name: str = "main",
    ) -> Registry: ...


@pytest.fixture(autouse=True)
def _capture_source_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Capture everything the sources log; tests assert on it (no secrets, retries)."""
    caplog.set_level(logging.DEBUG, logger="webhook.live.sources")
    caplog.set_level(logging.DEBUG, logger="webhook.clients")


@pytest.fixture(scope="session")
def harbor_server() -> Iterator[HarborFake]:
    with HarborFake() as fake:
        yield fake


@pytest.fixture
def harbor(harbor_server: HarborFake) -> HarborFake:
    """The Harbor fake, emptied: only the admin account, no projects, no faults."""
    harbor_server.reset()
    return harbor_server


@pytest.fixture(scope="session")
def real_registry_server() -> Iterator[RealRegistry]:
    reason = real_registry_unavailable()
    if reason:
        pytest.skip(reason)
    with RealRegistry.temporary() as registry:
        yield registry


@pytest.fixture
def real_registry(real_registry_server: RealRegistry) -> RealRegistry:
    """The real docker-registry with an empty catalog."""
    real_registry_server.reset()
    return real_registry_server


@pytest.fixture
def token_registry() -> Iterator[Callable[..., TokenRegistryFake]]:
    """Starts :class:`TokenRegistryFake` instances with the given options; stops them after."""
    started: list[TokenRegistryFake] = []

    def start(**options: Any) -> TokenRegistryFake:
        fake = TokenRegistryFake(**options).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


@pytest.fixture
def registry_config(tmp_path: Path) -> RegistryFactory:
    """Builds a :class:`Registry` whose credentials are files, as a mounted Secret gives them
    (with a trailing newline, as ``echo`` or an editor leaves it)."""

    def make(
        url: str,
        type: RegistryType = "harbor",
        username: str | None = None,
        password: str | None = None,
        *,
        name: str = "main",
    ) -> Registry:
        credentials = None
        if username is not None or password is not None:
            secret_dir = tmp_path / f"secret-{name}"
            secret_dir.mkdir(exist_ok=True)
            user_file, pass_file = secret_dir / "username", secret_dir / "password"
            user_file.write_text(f"{username}\n")
            pass_file.write_text(f"{password}\n")
            credentials = Credentials(str(user_file), str(pass_file))
        host = url.split("://", 1)[1]
        return Registry(
            name=name,
            type=type,
            url=url,
            hosts=(host,),
            credentials=credentials,
            insecure_url=url.startswith("http://"),
        )

    return make


def fetch(source: SpaceSource) -> dict[str, bool]:
    """One ``fetch()`` in a fresh event loop, closing the source afterwards."""

    async def once() -> dict[str, bool]:
        try:
            return await source.fetch()
        finally:
            await source.aclose()

    return asyncio.run(once())


def fetch_error(source: SpaceSource) -> SourceError:
    """The :class:`SourceError` one ``fetch()`` raises (fails the test if none)."""
    with pytest.raises(SourceError) as info:
        fetch(source)
    return info.value
