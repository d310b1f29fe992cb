"""The selector offers exactly what admission admits.

Hypothesis draws worlds (Harbor registries with public and private spaces, Docker Registries
of the platform or of one workspace, bindings, namespaces in workspaces or in none, modes)
and, for every namespace, compares the spaces the selector's API offers with ``decide`` on an
image of every space the world has: every offered space is admitted, every admitted space is
offered.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.config import load_config
from policy.decision import decide
from policy.snapshot import NamespaceInfo, Snapshot
from webhook.selector.app import create_selector_app
from webhook.selector.catalog import Catalog

from .conftest import Tokens

SPACES = ["library", "team-a", "team-b", "ml", "ops"]
WORKSPACES = ["101", "102", "103"]


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Snapshot, dict[str, str | None]]:
    registries = []
    for n in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["harbor", "docker-registry"]))
        spaces = draw(st.lists(st.sampled_from(SPACES), min_size=1, max_size=4, unique=True))
        workspace = draw(st.one_of(st.none(), st.sampled_from(WORKSPACES)))
        anonymous = draw(st.booleans())
        listed = ", ".join(
            f"{{name: {s}, public: {str(draw(st.booleans())).lower()}}}" for s in spaces
        )
        registries.append(
            f"""  - name: r{n}
    type: {kind}
    url: https://r{n}.example.com
    workspace: {"null" if workspace is None else f'"{workspace}"'}
    anonymousPull: {str(anonymous).lower()}
    spaces: [{listed}]"""
        )
    bindings = [
        f'  - {{registry: r{n}, space: {space}, workspaces: ["{ws}"]}}'
        for n in range(len(registries))
        for space in draw(st.lists(st.sampled_from(SPACES), max_size=3, unique=True))
        for ws in [draw(st.sampled_from(WORKSPACES))]
    ]
    mode = draw(st.sampled_from(["enforce", "warn", "audit"]))
    text = f"policy: {{mode: {mode}}}\nregistries:\n" + "\n".join(registries)
    text += "\nbindings:\n" + "\n".join(bindings) if bindings else "\nbindings: []\n"
    namespaces = {
        f"ns-{n}": draw(st.one_of(st.none(), st.sampled_from(WORKSPACES))) for n in range(4)
    }
    snapshot = Snapshot.build(
        load_config(text),
        namespaces={name: NamespaceInfo(ws) for name, ws in namespaces.items()},
    )
    return snapshot, namespaces


def offered(snapshot: Snapshot, namespace: str) -> set[tuple[str, str]]:
    app = create_selector_app(Catalog(lambda: snapshot), Tokens())

    async def ask() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://s") as http:
            answer = await http.get(
                f"/api/v1/namespaces/{namespace}/spaces",
                headers={"Authorization": f"Bearer {namespace}"},
            )
            assert answer.status_code == 200, answer.text
            return answer.json()

    return {(s["registry"], s["space"]) for s in asyncio.run(ask())["items"]}


def admitted(snapshot: Snapshot, namespace: str) -> set[tuple[str, str]]:
    found = set()
    for name, state in snapshot.registries.items():
        for space in state.spaces:
            image = f"{state.registry.hosts[0]}/{space}/app:1"
            verdict = decide(snapshot, namespace, {"containers": [{"name": "c", "image": image}]})
            if not verdict.containers[0].refused:
                found.add((name, space))
    return found


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_every_offered_space_is_admitted_and_every_admitted_one_offered(
    world: tuple[Snapshot, dict[str, str | None]],
) -> None:
    snapshot, namespaces = world
    for namespace in namespaces:
        assert offered(snapshot, namespace) == admitted(snapshot, namespace), namespace
