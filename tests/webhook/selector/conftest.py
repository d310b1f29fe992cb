"""The selector in-process: its app over a catalog of the Harbor fake, with a stand-in for the
token and access reviews (the real ones are tested on the apiserver in tests/e2e)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from policy.config import load_config
from policy.snapshot import NamespaceInfo, Snapshot
from tests.fakes.harbor import ADMIN_PASSWORD, ADMIN_USER, HarborFake
from webhook.clients.access import Identity, Refusal, ResourceAccess
from webhook.selector.app import create_selector_app
from webhook.selector.catalog import Catalog

HOST = "harbor.demo.local"


class Tokens:
    """``Bearer <namespace>`` may list images in that namespace; anything else is 403, no
    header 401. Records every check."""

    def __init__(self) -> None:
        self.checks: list[ResourceAccess] = []

    async def check(
        self, authorization: str | None, attributes: ResourceAccess
    ) -> Identity | Refusal:
        self.checks.append(attributes)
        if not authorization:
            return Refusal(401, "Unauthorized", "Unauthorized: no bearer token")
        user = authorization.removeprefix("Bearer ")
        if user == attributes.namespace or not attributes.namespace:
            return Identity(user)
        return Refusal(403, "Forbidden", f'forbidden: User "{user}" cannot {attributes.phrase()}')


def harbor_config(harbor: HarborFake, tmp: Path) -> str:
    (tmp / "u").write_text(ADMIN_USER)
    (tmp / "p").write_text(ADMIN_PASSWORD)
    return f"""
registries:
  - name: harbor
    type: harbor
    url: {harbor.url}
    hosts: [{HOST}]
    credentials: {{usernameFile: {tmp / "u"}, passwordFile: {tmp / "p"}}}
bindings:
  - {{registry: harbor, space: team-a, workspaces: ["101"]}}
  - {{registry: harbor, space: team-b, workspaces: ["102"]}}
"""


@pytest.fixture
def harbor() -> Iterator[HarborFake]:
    with HarborFake() as fake:
        fake.add_project("library", public=True)
        fake.add_project("team-a", public=False)
        fake.add_project("team-b", public=False)
        fake.add_repository("library", "nginx", ("1.27",))
        fake.add_repositories("team-a", [f"svc-{n:03d}" for n in range(120)], ("1.0", "2.0"))
        fake.add_repository("team-a", "web/frontend", ("3.0",))
        fake.add_repository("team-b", "payroll", ("9.9",))
        yield fake


@pytest.fixture
def snapshot(harbor: HarborFake, tmp_path: Path) -> Snapshot:
    config = load_config(harbor_config(harbor, tmp_path))
    return Snapshot.build(
        config,
        spaces={"harbor": {"library": True, "team-a": False, "team-b": False}},
        namespaces={"a": NamespaceInfo("101"), "b": NamespaceInfo("102"), "c": NamespaceInfo()},
    )


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture
def catalog(snapshot: Snapshot) -> Catalog:
    return Catalog(lambda: snapshot)


@pytest.fixture
def client(catalog: Catalog, tokens: Tokens) -> httpx.AsyncClient:
    app = create_selector_app(catalog, tokens)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://selector")
