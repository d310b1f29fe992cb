"""Chaos on the real control plane: three replicas behind HAProxy, faults under steady load.

What it does (bounded time, loopback only): starts a control plane (etcd, kube-apiserver,
kube-controller-manager, built by the e2e tests), then the chaos world of
``tests/support/chaos`` — three ``spacegate serve`` replicas behind Debian's HAProxy, the
chart's webhooks (``failurePolicy: Fail``) pointing at it, the leader's work live (Lease,
provisioning with the namespace guard, audit), the Harbor fake and the real Docker Registry
behind fault proxies. First it asks the apiserver what it does itself when a webhook call is
reset, closed or times out (``tests/support/chaos/probe.py``). Then a steady load of Pod and
Deployment creates runs through a quiet window and every fault in turn, each followed by the
wait for convergence (replicas UP, a leader, pull Secrets and robots, PolicyReports as the
world says), then all faults mixed at random with a fixed seed.

It prints one row per fault: creates sent from the fault's start until convergence, wrongly
admitted (a refused image got in: must be 0), wrongly refused with why, retries the client
made, creates in a world-change window (either verdict right), p99 create latency in the
window vs the quiet window, and the convergence time.

``--short`` runs a subset with short holds, in under two minutes, and exits 1 on any wrongly
admitted create, any wrong verdict of spacegate's own, a wrong patch, a convergence past its
bound, or a foreign Secret touched. ``make test`` runs it (``tests/e2e/test_chaos.py``).

Run: ``nice -n 10 .venv/bin/python bench/chaos.py [--short] [--seed 19] [--rate 4] [--only
'kill -9 leader,mixed']``; ``SPACEGATE_KEEP_CHAOS=1`` keeps the replicas' and HAProxy's logs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.chaos.convergence import foreign_touched, wait_converged  # noqa: E402
from tests.support.chaos.faults import FAULTS, Fault, fault, mixed  # noqa: E402
from tests.support.chaos.haproxy import CHECK, haproxy_unavailable  # noqa: E402
from tests.support.chaos.load import Create, Load, sweep  # noqa: E402
from tests.support.chaos.probe import probe_apiserver  # noqa: E402
from tests.support.chaos.world import SETTLE, World  # noqa: E402
from tests.support.controlplane.plane import ControlPlane  # noqa: E402

SHORT = [
    "kill -9 replica",
    "kill -9 leader",
    "Harbor outage > maxStaleness",
    "namespace relabel",
    "binding object change",
    "apiserver restart",
]


@dataclass
class Row:
    name: str
    began: float
    ended: float  # the fault put back
    converged_s: float | None
    problems: list[str]
    notes: dict[str, str] = field(default_factory=dict)
    creates: list[Create] = field(default_factory=list)

    def until(self, bound: float) -> float:
        return self.ended + (self.converged_s if self.converged_s is not None else bound)


def p99(creates: list[Create]) -> float:
    values = sorted(c.latency for c in creates)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(0.99 * len(values)))] * 1000


def count(creates: list[Create], verdict: str) -> int:
    return sum(1 for c in creates if c.verdict == verdict)


def refused_why(creates: list[Create]) -> str:
    reasons: dict[str, int] = {}
    for c in creates:
        if c.verdict == "wrongly-refused":
            reasons[c.why] = reasons.get(c.why, 0) + 1
    total = sum(reasons.values())
    if not total:
        return "0"
    return f"{total} (" + "; ".join(f"{n}× {why}" for why, n in sorted(reasons.items())) + ")"


def table(rows: list[Row], quiet: list[Create], bound: float) -> str:
    quiet_p99 = p99(quiet)
    lines = [
        "| fault | creates | wrongly admitted | wrongly refused (why) | retried (retries) "
        "| either (change window) | wrong patch | p99 ms window / quiet | convergence s |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        creates = row.creates
        retried = [c for c in creates if c.retries]
        converged = (
            f"{row.converged_s:.1f}"
            if row.converged_s is not None
            else f"> {bound:.0f} (MISSED: {'; '.join(row.problems[:3])})"
        )
        lines.append(
            f"| {row.name} | {len(creates)} | {count(creates, 'wrongly-admitted')} "
            f"| {refused_why(creates)} | {len(retried)} ({sum(c.retries for c in retried)}) "
            f"| {count(creates, 'either')} | {count(creates, 'wrong-patch')} "
            f"| {p99(creates):.0f} / {quiet_p99:.0f} | {converged} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="the make-test subset (< 2 min)")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--rate", type=float, default=None, help="creates per second")
    parser.add_argument("--hold", type=float, default=None, help="seconds each fault lasts")
    parser.add_argument("--bound", type=float, default=45.0, help="convergence bound, s")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument(
        "--only", help="comma-separated fault names (as in the table) and/or 'mixed'"
    )
    args = parser.parse_args()
    reason = haproxy_unavailable()
    if reason:
        print(f"chaos: {reason}", file=sys.stderr)
        return 2
    rate = args.rate or (4.0 if args.short else 5.0)
    hold = args.hold or (3.0 if args.short else 8.0)
    max_staleness = 5.0 if args.short else 10.0
    names = SHORT if args.short else list(FAULTS)
    with_mixed = not args.short
    if args.only:
        chosen = [n.strip() for n in args.only.split(",")]
        unknown = set(chosen) - set(FAULTS) - {"mixed"}
        if unknown:
            parser.error(f"--only: unknown faults {sorted(unknown)}; known: {list(FAULTS)}")
        names = [n for n in chosen if n != "mixed"]
        with_mixed = "mixed" in chosen
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="spacegate-chaos-"))
    rows: list[Row] = []
    phases: dict[str, float] = {}

    def phase(name: str) -> None:
        phases[name] = time.monotonic() - started

    try:
        with ControlPlane() as plane:
            phase("control plane up")
            probes = probe_apiserver(plane, workdir)
            phase("apiserver probed")
            with World(plane, workdir, max_staleness=max_staleness, audit_interval=60) as world:
                phase("world up")
                ready_s, problems = wait_converged(world, 60)
                phase("world converged")
                if ready_s is None:
                    print(f"chaos: the world never converged: {problems}", file=sys.stderr)
                    return 1
                load = Load(world, rate, seed=args.seed).start()
                try:
                    quiet_began = time.monotonic()
                    time.sleep(5 if args.short else 15)
                    quiet_ended = time.monotonic()
                    for name in names:
                        rows.append(run_one(world, fault(name), hold, args.bound))
                        time.sleep(1)
                    if with_mixed:
                        rows.append(run_mixed(world, hold, args.seed, args.bound))
                finally:
                    load.stop()
                phase("faults done")
                changes = [(c.what, c.began, c.ended) for c in world.changes]
                touched = foreign_touched(world)
                swept = sweep(world)
                creates = load.creates
                late = load.late
            phase("world stopped")
    finally:
        if os.environ.get("SPACEGATE_KEEP_CHAOS") == "1":
            print(f"chaos: logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    phase("control plane stopped")
    quiet = [c for c in creates if quiet_began <= c.began < quiet_ended]
    for row in rows:
        row.creates = [c for c in creates if row.began <= c.began < row.until(args.bound)]
    elapsed = time.monotonic() - started
    report(rows, quiet, creates, probes, args, rate, hold, max_staleness, late, swept, touched)
    wrong = [c for c in creates if c.verdict not in ("right", "either")]
    if wrong:
        print("\nworld changes (s since the quiet window began):")
        for what, began, ended in changes:
            print(f"  {what}: {began - quiet_began:.1f} -> {ended - quiet_began:.1f}")
        print("wrong answers (s since the quiet window began):")
        for c in wrong:
            print(
                f"  #{c.seq} sent {c.began - quiet_began:.1f}, answered {c.ended - quiet_began:.1f}"
            )
    print(
        f"\nwall time {elapsed:.0f} s ("
        + ", ".join(f"{k} {v:.0f}" for k, v in phases.items())
        + ")"
    )
    if args.json:
        args.json.write_text(json.dumps(figures(rows, quiet, creates), indent=2))
    failures = verdict_failures(rows, creates, touched)
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if (failures and args.short) else 0


def run_one(world: World, item: Fault, hold: float, bound: float) -> Row:
    began = time.monotonic()
    item.run(world, hold)
    ended = time.monotonic()
    converged, problems = wait_converged(world, bound)
    print(f"  {item.name}: back after {ended - began:.1f} s, converged {converged}", flush=True)
    return Row(item.name, began, ended, converged, problems, dict(item.notes))


def run_mixed(world: World, hold: float, seed: int, bound: float) -> Row:
    began = time.monotonic()
    done = mixed(world, list(FAULTS), hold, seed, gap=3.0)
    ended = time.monotonic()
    converged, problems = wait_converged(world, bound)
    print(f"  all mixed: back after {ended - began:.1f} s, converged {converged}", flush=True)
    notes = {f.name: json.dumps(f.notes) for f in done}
    return Row(f"all mixed (seed {seed})", began, ended, converged, problems, notes)


def verdict_failures(rows: list[Row], creates: list[Create], touched: bool) -> list[str]:
    failures = []
    for verdict in ("wrongly-admitted", "wrong-patch"):
        if n := count(creates, verdict):
            failures.append(f"{n} creates {verdict}")
    if n := sum(
        1 for c in creates if c.verdict == "wrongly-refused" and c.why.startswith("denied")
    ):
        failures.append(f"{n} creates refused by the policy that the world allows")
    failures += [f"{r.name}: not converged: {r.problems}" for r in rows if r.converged_s is None]
    failures += [
        f"{r.name}: the fault could not be carried out: {note}"
        for r in rows
        for note in r.notes.values()
        if '"error":' in note
    ]
    failures += [f"{r.name}: {r.notes['error']}" for r in rows if "error" in r.notes]
    if touched:
        failures.append("the foreign registry-secret was touched")
    return failures


def report(
    rows: list[Row],
    quiet: list[Create],
    creates: list[Create],
    probes: Sequence[object],
    args: argparse.Namespace,
    rate: float,
    hold: float,
    max_staleness: float,
    late: int,
    swept: int,
    touched: bool,
) -> None:
    print("\nWhat the apiserver does itself when the webhook call breaks (failurePolicy Fail):")
    for probe in probes:
        print(f"  {probe}")
    print(
        f"\nload: {rate:g} creates/s (Pods and Deployments, allowed, patched, refused), "
        f"{len(creates)} in all, {late} sent late; fault hold {hold:g} s; "
        f"maxStaleness {max_staleness:g} s; change window +{SETTLE:g} s; "
        f"client retries: 4, backoff 0.5-4 s; HAProxy check {CHECK}"
    )
    print(f"quiet window: {len(quiet)} creates, p99 {p99(quiet):.0f} ms\n")
    print(table(rows, quiet, args.bound))
    print("\nnotes:")
    for row in rows:
        print(f"  {row.name}: {row.notes}")
    causes: dict[str, int] = {}
    for c in creates:
        for attempt in c.attempts[:-1]:
            cause = f"{attempt.outcome}: {attempt.detail[:60]}"
            causes[cause] = causes.get(cause, 0) + 1
    print("\nretried tries by cause:")
    for cause, n in sorted(causes.items(), key=lambda item: -item[1]):
        print(f"  {n}× {cause}")
    wrong = [c for c in creates if c.verdict not in ("right", "either")]
    print(f"\nall creates: {len(creates)}, wrong answers: {len(wrong)}")
    for c in wrong[:20]:
        print(f"  #{c.seq} {c.kind} {c.namespace} {c.image}: {c.verdict}: {c.why}")
    print(f"foreign Secret touched: {touched}; load objects swept after the run: {swept}")


def figures(rows: list[Row], quiet: list[Create], creates: list[Create]) -> dict[str, object]:
    return {
        "quiet_p99_ms": p99(quiet),
        "creates": len(creates),
        "rows": [
            {
                "fault": r.name,
                "creates": len(r.creates),
                "wrongly_admitted": count(r.creates, "wrongly-admitted"),
                "wrongly_refused": refused_why(r.creates),
                "p99_ms": p99(r.creates),
                "converged_s": r.converged_s,
                "notes": r.notes,
            }
            for r in rows
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
