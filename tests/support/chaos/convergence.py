"""Has the cluster come back to what the world says? Provisioning, audit, replicas, leader.

:func:`problems` lists every way the cluster differs from the world now (empty: converged):

- a replica not running, or not UP in HAProxy; no live replica holding the Lease;
- a namespace whose workspace has private spaces bound without spacegate's pull Secret, or
  whose Secret's Harbor login is not a robot with pull on exactly those spaces; a namespace
  that needs none still holding spacegate's Secret;
- a robot of spacegate's in the Harbor fake that no pull Secret names (an orphan: the safe
  order creates the new robot before the old one goes, so one exists for a moment during a
  rotation, never after it);
- a standing Pod's PolicyReport missing, or its result not what the world says now.

:func:`foreign_touched` is separate because it must never happen, not merely end: the
``registry-secret`` in the ``foreign`` namespace (someone else's) keeps its resourceVersion.
"""

from __future__ import annotations

import base64
import json
import time

import httpx

from tests.support.chaos.world import HARBOR_HOST, PULL_SECRET, STANDING, World

__all__ = ["foreign_touched", "problems", "wait_converged"]

SPACEGATE = {"app.kubernetes.io/managed-by": "spacegate", "spacegate.io/component": "pull-secret"}
ROBOT_PREFIX = "robot$spacegate-"


def problems(world: World) -> list[str]:
    """What differs from the world now (see the module doc)."""
    found: list[str] = []
    try:
        states = world.haproxy.states()
    except OSError as exc:
        return [f"HAProxy: {exc}"]
    found += [
        f"{r.name} is not running" if not r.running else f"{r.name} is {states.get(r.name)}"
        for r in world.replicas
        if not r.running or states.get(r.name) != "UP"
    ]
    try:
        if world.leader() is None:
            found.append("no live replica holds the Lease")
        with world.plane.http_client(timeout=10) as http:
            found += _secrets(world, http)
            found += _reports(world, http)
    except httpx.HTTPError as exc:
        found.append(f"apiserver: {type(exc).__name__}")
    return found


def _secrets(world: World, http: httpx.Client) -> list[str]:
    found: list[str] = []
    robots = {r.name: r for r in world.harbor.robots() if r.name.startswith(ROBOT_PREFIX)}
    named: set[str] = set()
    with world.lock:
        needs = {key: world.truth.needs_secret(key) for key in world.names if key != "foreign"}
    for key, spaces in needs.items():
        namespace = world.names[key]
        answer = http.get(f"/api/v1/namespaces/{namespace}/secrets/{PULL_SECRET}")
        if answer.status_code == 404:
            if spaces:
                found.append(f"{namespace}: no pull Secret")
            continue
        answer.raise_for_status()
        secret = answer.json()
        labels = secret["metadata"].get("labels") or {}
        if any(labels.get(k) != v for k, v in SPACEGATE.items()):
            found.append(f"{namespace}: {PULL_SECRET} is not spacegate's")
            continue
        if not spaces:
            found.append(f"{namespace}: still holds spacegate's pull Secret")
            continue
        auths = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))["auths"]
        login = base64.b64decode(auths[HARBOR_HOST]["auth"]).decode().partition(":")[0]
        named.add(login)
        robot = robots.get(login)
        if robot is None:
            found.append(f"{namespace}: its robot {login} is not in Harbor")
            continue
        projects = {p.namespace for p in robot.permissions if p.kind == "project"}
        if projects != spaces:
            found.append(f"{namespace}: robot pulls {sorted(projects)}, not {sorted(spaces)}")
    found += [f"orphan robot {name}" for name in sorted(set(robots) - named)]
    return found


def _reports(world: World, http: httpx.Client) -> list[str]:
    found: list[str] = []
    for key, uid in world.standing.items():
        namespace = world.names[key]
        with world.lock:
            allowed = world.truth.expect(key, world.images[STANDING[key]], "Pod").allowed
        want = "pass" if allowed else "fail"
        answer = http.get(
            f"/apis/wgpolicyk8s.io/v1alpha2/namespaces/{namespace}/policyreports/spacegate-{uid}"
        )
        if answer.status_code != 200:
            found.append(
                f"{namespace}: no PolicyReport for the standing Pod ({answer.status_code})"
            )
            continue
        results = {r.get("result") for r in answer.json().get("results") or []}
        if results != {want}:
            found.append(f"{namespace}: report says {sorted(results)}, the world {want}")
    return found


def foreign_touched(world: World) -> bool:
    """Whether someone else's ``registry-secret`` changed (spacegate must never touch it)."""
    with world.plane.http_client(timeout=10) as http:
        answer = http.get(f"/api/v1/namespaces/{world.names['foreign']}/secrets/{PULL_SECRET}")
    if answer.status_code != 200:
        return True
    return bool(answer.json()["metadata"]["resourceVersion"] != world.foreign_version)


def wait_converged(world: World, bound: float) -> tuple[float | None, list[str]]:
    """Seconds until :func:`problems` is empty (None past ``bound``), and the last problems."""
    began = time.monotonic()
    last: list[str] = []
    while True:
        last = problems(world)
        elapsed = time.monotonic() - began
        if not last:
            return elapsed, []
        if elapsed > bound:
            return None, last
        time.sleep(0.5)
