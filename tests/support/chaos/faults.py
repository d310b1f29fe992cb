"""The faults, each a function of the :class:`World` that breaks something and restores it.

Each :class:`Fault` runs in the calling thread and returns once what it broke is put back
(the replica restarted, the registry answering again, the namespace relabelled back); the
cluster's own recovery after that — HAProxy's checks, the Lease, provisioning, the audit —
is measured by :mod:`.convergence`. ``hold`` is how long the broken state lasts.

``groups`` say what a fault touches (the replicas, the registries, the control plane, the
world), so that :func:`mixed` can run faults at random with a fixed seed, several at once,
without two of them fighting over the same thing (two faults killing replicas at once
would take down all three: that is a different promise, a PodDisruptionBudget's).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace

from tests.support.chaos.fault_proxy import Mode, ProxyCounts
from tests.support.chaos.replicas import Replica
from tests.support.chaos.world import World
from tests.support.waiting import eventually

__all__ = ["FAULTS", "Fault", "mixed"]

PRE_STOP = 2.0
"""Seconds between a replica leaving HAProxy's rotation and its SIGTERM in a rolling restart
(the chart's ``preStopSleepSeconds``, 5 by default, shortened here: on loopback the
'endpoints' change — a runtime API command — takes effect at once)."""


@dataclass
class Fault:
    """A named fault: what it touches and what it does; ``notes`` what it saw."""

    name: str
    groups: frozenset[str]
    act: Callable[[World, float, dict[str, str]], None]
    notes: dict[str, str] = field(default_factory=dict)

    def run(self, world: World, hold: float) -> None:
        """Break and restore; a fault that cannot be carried out is noted (``error``), not
        raised, so the run goes on and reports it (``bench/chaos.py`` fails on it)."""
        try:
            self.act(world, hold, self.notes)
        except Exception as exc:
            self.notes["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"


def _follower(world: World) -> Replica:
    leader = eventually(world.leader, "a leader", timeout=60)
    return next(r for r in world.replicas if r is not leader)


def _restart(replica: Replica, notes: dict[str, str], *, key: str = "ready_s") -> None:
    replica.start()
    notes[key] = f"{replica.wait_ready(120):.1f}"


def kill_replica(world: World, hold: float, notes: dict[str, str]) -> None:
    """kill -9 of a replica that is not the leader; a new pod after ``hold`` s."""
    victim = _follower(world)
    victim.kill()
    time.sleep(hold)
    _restart(victim, notes)


def hang_then_kill(world: World, hold: float, notes: dict[str, str]) -> None:
    """SIGSTOP of the replica holding most of the apiserver's open connections: alive but
    silent, as a stuck process or a partitioned node. Calls on those connections time out
    after ``timeoutSeconds`` (the client retries), and HAProxy keeps giving it new
    connections until its checks fail (3 × 5 s, each allowed 3 s). Then SIGKILL — what is
    in flight on it is lost — and a new pod."""
    sessions = world.haproxy.sessions()
    victim = max(world.replicas, key=lambda r: sessions.get(r.name, 0))
    notes["victim_sessions"] = str(sessions.get(victim.name, 0))
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGSTOP)
    began = time.monotonic()
    eventually(
        lambda: world.haproxy.states().get(victim.name, "").startswith("DOWN"),
        f"HAProxy to take the silent {victim.name} out",
        timeout=60,
    )
    notes["out_of_rotation_s"] = f"{time.monotonic() - began:.1f}"
    time.sleep(max(0.0, hold - (time.monotonic() - began)))
    victim.kill()
    _restart(victim, notes)


def kill_leader(world: World, hold: float, notes: dict[str, str]) -> None:
    """kill -9 of the Lease holder; another replica must take the Lease over."""
    victim = eventually(world.leader, "a leader", timeout=60)
    victim.kill()
    began = time.monotonic()
    successor = eventually(
        lambda: (lead := world.leader()) is not None and lead is not victim and lead,
        "another replica to take the Lease",
        timeout=60,
    )
    notes["lease_moved_s"] = f"{time.monotonic() - began:.1f}"
    notes["new_leader"] = successor.name if isinstance(successor, Replica) else "?"
    time.sleep(max(0.0, hold - (time.monotonic() - began)))
    _restart(victim, notes)


def rolling_restart(world: World, hold: float, notes: dict[str, str]) -> None:
    """Each replica in turn: out of rotation, SIGTERM, a new pod, ready, back in rotation."""
    del hold
    for replica in world.replicas:
        world.haproxy.drain(replica.name)
        time.sleep(PRE_STOP)
        replica.terminate()
        _restart(replica, notes, key=f"{replica.name}_ready_s")
        world.haproxy.ready(replica.name)
        eventually(
            lambda r=replica: world.haproxy.states().get(r.name) == "UP",  # type: ignore[misc]
            f"{replica.name} UP in HAProxy",
            timeout=30,
        )


def _wait_served(world: World, serial: int, timeout: float = 30.0) -> float:
    began = time.monotonic()

    def served() -> bool:
        for replica in world.replicas:
            cert = replica.served_certificate()
            if cert is None or cert.serial_number != serial:
                return False
        return True

    eventually(served, "every replica serving the new certificate", timeout=timeout)
    return time.monotonic() - began


def cert_rotation(world: World, hold: float, notes: dict[str, str]) -> None:
    """A new serving certificate from the same CA, swapped into the Secret-like directory."""
    del hold
    cert = world.certs.issue()
    notes["reloaded_s"] = f"{_wait_served(world, cert.serial_number):.1f}"


def ca_rollover(world: World, hold: float, notes: dict[str, str]) -> None:
    """A new CA: both CAs in the caBundle first, then a certificate of the new CA, then the
    old CA dropped from the bundle (README, certificates.mode secret)."""
    old = world.certs.ca
    new = world.certs.new_ca()
    world.apply_webhooks(world.certs.bundle(old, new))
    time.sleep(hold / 2)  # the apiserver's webhook informer picks the new bundle up
    cert = world.certs.issue()
    notes["reloaded_s"] = f"{_wait_served(world, cert.serial_number):.1f}"
    time.sleep(hold / 2)
    world.apply_webhooks(world.certs.bundle(new))


_KEEPER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="control-plane")
"""Where the control plane's binaries are restarted: one thread that lives as long as the
process. They run under ``setpriv --pdeathsig KILL``, which is tied to the *thread* that
started them (tests/support/controlplane/plane.py), so an etcd restarted from a fault's own
thread would be killed as soon as that thread ends."""


def apiserver_restart(world: World, hold: float, notes: dict[str, str]) -> None:
    del hold
    began = time.monotonic()
    _KEEPER.submit(world.plane.restart_apiserver).result()
    notes["down_s"] = f"{time.monotonic() - began:.1f}"


def etcd_restart(world: World, hold: float, notes: dict[str, str]) -> None:
    del hold
    began = time.monotonic()
    _KEEPER.submit(world.plane.restart_etcd).result()
    notes["down_s"] = f"{time.monotonic() - began:.1f}"


def _stale_replicas(world: World) -> int:
    return sum(1 for r in world.replicas if r.running and not r.ready(staleness=True))


def harbor_outage(world: World, hold: float, notes: dict[str, str]) -> None:
    """Harbor refuses connections for longer than ``maxStaleness``: replicas keep deciding
    from their last-known-good spaces and say they are stale; the probe (which excludes
    staleness) keeps them in rotation."""
    assert world.harbor_proxy is not None
    world.harbor_proxy.set_mode("refuse")
    time.sleep(max(hold, world.max_staleness + 3))
    notes["stale_replicas"] = str(_stale_replicas(world))
    world.harbor_proxy.set_mode("pass")


def _harbor_misbehaves(
    world: World, hold: float, mode: Mode, *, seconds: float = 0.0, status: int = 503
) -> ProxyCounts:
    """Harbor in ``mode`` for ``hold`` s; what the proxy did meanwhile."""
    proxy = world.harbor_proxy
    assert proxy is not None
    before = replace(proxy.counts)
    proxy.set_mode(mode, seconds=seconds, status=status)
    time.sleep(hold)
    proxy.set_mode("pass")
    after = proxy.counts
    return ProxyCounts(
        *(getattr(after, f.name) - getattr(before, f.name) for f in fields(ProxyCounts))
    )


def harbor_slow(world: World, hold: float, notes: dict[str, str]) -> None:
    """Every Harbor request waits 4 s."""
    notes["delayed"] = str(_harbor_misbehaves(world, hold, "delay", seconds=4.0).delayed)


def harbor_5xx(world: World, hold: float, notes: dict[str, str]) -> None:
    """Every Harbor request gets 503."""
    notes["failed"] = str(_harbor_misbehaves(world, hold, "error", status=503).failed)


def relabel(world: World, hold: float, notes: dict[str, str]) -> None:
    """Namespace ``move`` goes from workspace 101 to 102, then back."""
    del notes
    world.relabel("move", "102")
    time.sleep(hold)
    world.relabel("move", "101")


def binding_change(world: World, hold: float, notes: dict[str, str]) -> None:
    """A RegistrySpaceBinding object binds team-b to workspace 101 too; then it is deleted."""
    del notes
    world.bind("team-b", ["101"])
    time.sleep(hold)
    world.bind("team-b", [])


def start_registries_down(world: World, hold: float, notes: dict[str, str]) -> None:
    """Every registry refuses; a replica (not the leader) is killed and a new one started.
    With the leader's persisted last-known-good copy it becomes ready, stale, and serves;
    without one it stays unready and out of rotation (the two others serve)."""
    assert world.harbor_proxy is not None and world.registry_proxy is not None
    victim = _follower(world)
    world.harbor_proxy.set_mode("refuse")
    world.registry_proxy.set_mode("refuse")
    try:
        victim.kill()
        victim.start()
        began = time.monotonic()
        try:
            notes["ready_s"] = f"{victim.wait_ready(max(hold, 15.0)):.1f}"
            notes["stale"] = str(not victim.ready(staleness=True))
        except AssertionError:
            notes["ready_s"] = f"not ready in {time.monotonic() - began:.0f}"
        time.sleep(max(0.0, hold - (time.monotonic() - began)))
    finally:
        world.harbor_proxy.set_mode("pass")
        world.registry_proxy.set_mode("pass")
    victim.wait_ready(60)


REPLICAS, REGISTRIES, PLANE, WORLD = "replicas", "registries", "control-plane", "world"

FAULTS: dict[str, tuple[frozenset[str], Callable[[World, float, dict[str, str]], None]]] = {
    "kill -9 replica": (frozenset({REPLICAS}), kill_replica),
    "kill -9 leader": (frozenset({REPLICAS}), kill_leader),
    "replica hung (SIGSTOP) then kill -9": (frozenset({REPLICAS}), hang_then_kill),
    "rolling restart": (frozenset({REPLICAS}), rolling_restart),
    "cert rotation (same CA)": (frozenset({REPLICAS}), cert_rotation),
    "CA rollover (both in bundle)": (frozenset({REPLICAS}), ca_rollover),
    "apiserver restart": (frozenset({PLANE}), apiserver_restart),
    "etcd restart": (frozenset({PLANE}), etcd_restart),
    "Harbor outage > maxStaleness": (frozenset({REGISTRIES}), harbor_outage),
    "Harbor slow (4 s)": (frozenset({REGISTRIES}), harbor_slow),
    "Harbor 5xx": (frozenset({REGISTRIES}), harbor_5xx),
    "namespace relabel": (frozenset({WORLD}), relabel),
    "binding object change": (frozenset({WORLD}), binding_change),
    "replica start, registries down": (frozenset({REPLICAS, REGISTRIES}), start_registries_down),
}


def fault(name: str) -> Fault:
    groups, act = FAULTS[name]
    return Fault(name, groups, act)


def mixed(world: World, names: list[str], hold: float, seed: int, gap: float) -> list[Fault]:
    """Every fault of ``names`` once, in a random order (``seed``), each started after a
    random pause of up to ``gap`` s, running alongside others that touch different things.
    Returns once all have finished."""
    rng = random.Random(seed)
    order = [fault(n) for n in names]
    rng.shuffle(order)
    busy: set[str] = set()
    cond = threading.Condition()
    threads: list[threading.Thread] = []

    def run(item: Fault) -> None:
        try:
            item.run(world, hold)
        finally:
            with cond:
                busy.difference_update(item.groups)
                cond.notify_all()

    for item in order:
        time.sleep(rng.uniform(0, gap))
        with cond:
            cond.wait_for(lambda i=item: not (busy & i.groups))  # type: ignore[misc]
            busy.update(item.groups)
        item.notes["started_at"] = f"{time.monotonic():.1f}"
        thread = threading.Thread(target=run, args=(item,), name=f"fault {item.name}")
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    return order
