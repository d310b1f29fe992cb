"""Benchmark: pull-secret provisioning at scale, from scratch and after one binding change.

What it measures: the provisioner ``spacegate serve`` runs on the leader
(:class:`webhook.leader.provisioning.writer.Provisioner`, its real Harbor robot client and
its real Secret store) reconciling 1,000 workspaces x 10 namespaces x 5 bound private spaces:

- *from scratch*: no robot, no Secret yet (1,000 robots and 11,000 Secrets to make);
- *no change*: the same snapshot again (must write nothing);
- *bind one space*: one more space bound to one workspace (a new robot for it, its 10
  Secrets updated, the old robot deleted);
- *unbind it again*: the same workspace back to its 5 spaces;
- *one namespace leaves*: one namespace of that workspace relabelled out of it (the robot
  it held is replaced: a new robot, the other 9 Secrets updated, its Secret deleted, the
  old robot deleted);
- *it joins again*: the same namespace back (its credential's record of holders extended,
  then its Secret created: no new robot).

For each pass: wall time (split into computing the desired state, observing what exists,
planning and applying), Harbor calls (robot list pages, creates, deletes, HTTP requests)
and apiserver requests on Secrets, counted twice: by the store (what spacegate asked) and
by the apiserver's own ``apiserver_request_total`` (what it served); and the longest stall
of the event loop during the pass (``serve`` runs the provisioner on the loop that answers
admission requests, so a leader's admission answers wait that long). Peak RSS of this
process is printed at the end.

Where things run: the Harbor fake (``tests.fakes.harbor.HarborFake``, 5,000 private
projects) in **another process** (``python -c`` running it with uvicorn), so its CPU and
memory are not counted here; the Kubernetes side on a real etcd + kube-apiserver built by
the e2e tests (``ControlPlane(controllers=())``), with the namespaces created by this
script before the first pass. Everything shares this 2-core machine.

Admission through the apiserver during the first pass: a ``spacegate serve`` behind the
chart's webhooks (``tests.support.admission_probe``) and a probe creating a Pod (dry run)
20 times a second through the apiserver, one at a time; its p99 in a quiet window before
the passes vs while the from-scratch pass runs (``--no-probe`` leaves it out). The pass
runs in this process, the webhook in its own: what the probe sees is the apiserver, etcd
and the CPU shared with the pass; the pass's own event-loop stall is the row's "loop stall".
429s: the writes the apiserver refused with Too Many Requests during the pass (each retried
after its Retry-After, ``webhook.clients.kube_writes``).

Targets (issue "Provisioning pull secrets"): a single binding change costs O(namespaces of
that workspace) writes, not O(all), and converges in <= 5 s at this size; (issue "Chaos")
the pass from scratch <= 10 s, with admission p99 through the apiserver meanwhile <= 1.5x
its quiet p99. Figures, not a test: it prints a table and exits 0 whatever the numbers are.

Run: ``.venv/bin/python bench/provision.py [--workspaces 1000] [--namespaces 10]
[--spaces 5] [--no-probe]`` (smaller numbers for a quick look).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client, config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import webhook.leader.provisioning.writer as provisioner_module  # noqa: E402
from policy.config import Config, load_config  # noqa: E402
from policy.snapshot import NamespaceInfo, Snapshot  # noqa: E402
from tests.support.admission_probe import AdmissionProbe, percentile, serving_webhooks  # noqa: E402
from tests.support.controlplane.plane import ControlPlane  # noqa: E402
from tests.support.metrics import samples  # noqa: E402
from webhook.clients.kube_writes import DEFAULT_WORKERS  # noqa: E402
from webhook.leader.provisioning.robots import CreatedRobot, HarborRobots, Robot  # noqa: E402
from webhook.leader.provisioning.secrets import RobotCredential, SecretStore, Version  # noqa: E402
from webhook.leader.provisioning.writer import Provisioner  # noqa: E402
from webhook.live.sources.namespaces import fetch_namespaces  # noqa: E402

LABEL = "workspace.ghippo.io/id"
HOME = "spacegate-system"
SECRET = "registry-secret"
TARGET_SECONDS = 5.0
SCRATCH_TARGET_SECONDS = 10.0
P99_FACTOR = 1.5

# The Harbor fake, served from another process until its stdin closes.
HARBOR_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from tests.fakes.harbor import HarborFake
fake = HarborFake().start()
fake.add_project("library", public=True)
fake.add_projects(sys.argv[2].split(","), public=False)
print(fake.url, flush=True)
sys.stdin.read()
fake.stop()
"""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def workspace(w: int) -> str:
    return f"ws{w:04d}"


def project(w: int, k: int) -> str:
    return f"p{w:04d}-{k}"


# --------------------------------------------------------------------------- counting


@dataclass
class Counts:
    """What one pass asked of Harbor and of the apiserver."""

    harbor: collections.Counter[str] = field(default_factory=collections.Counter)
    kube: collections.Counter[str] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, side: str, what: str) -> None:
        with self.lock:
            (self.harbor if side == "harbor" else self.kube)[what] += 1

    def reset(self) -> None:
        with self.lock:
            self.harbor.clear()
            self.kube.clear()


class CountingRobots(HarborRobots):
    """The real robot client, counting its calls and the HTTP requests they make."""

    def __init__(self, registry: Any, counts: Counts) -> None:
        self._counts = counts

        async def on_request(request: httpx.Request) -> None:
            counts.add("harbor", f"http {request.method}")

        self._own = httpx.AsyncClient(
            timeout=30.0, follow_redirects=False, event_hooks={"request": [on_request]}
        )
        super().__init__(registry, client=self._own)

    async def list_robots(self, name_prefix: str) -> list[Robot]:
        self._counts.add("harbor", "list robots")
        return await super().list_robots(name_prefix)

    async def create_robot(
        self, name: str, description: str, projects: Iterable[str], *, duration_days: int = -1
    ) -> CreatedRobot:
        self._counts.add("harbor", "create robot")
        return await super().create_robot(name, description, projects, duration_days=duration_days)

    async def delete_robot(self, robot_id: int) -> None:
        self._counts.add("harbor", "delete robot")
        await super().delete_robot(robot_id)

    async def aclose(self) -> None:
        await super().aclose()
        await self._own.aclose()


class CountingStore(SecretStore):
    """The real Secret store, counting each call (one apiserver request each, lists paged)."""

    def __init__(self, api: client.ApiClient, counts: Counts) -> None:
        super().__init__(api, home=HOME)
        self._counts = counts

    def list_pull_secrets(self, name: str) -> Any:
        self._counts.add("kube", "list pull Secrets")
        return super().list_pull_secrets(name)

    def list_credentials(self) -> Any:
        self._counts.add("kube", "list credentials")
        return super().list_credentials()

    def create_pull_secret(self, namespace: str, name: str, content: bytes) -> None:
        self._counts.add("kube", "create Secret")
        super().create_pull_secret(namespace, name, content)

    def update_pull_secret(
        self, namespace: str, name: str, content: bytes, version: Version
    ) -> None:
        self._counts.add("kube", "replace Secret")
        super().update_pull_secret(namespace, name, content, version)

    def delete_pull_secret(self, namespace: str, name: str, version: Version) -> None:
        self._counts.add("kube", "delete Secret")
        super().delete_pull_secret(namespace, name, version)

    def write_credential(
        self, name: str, credential: RobotCredential, version: Version | None = None
    ) -> None:
        self._counts.add("kube", "write credential")
        super().write_credential(name, credential, version)

    def delete_credential(self, name: str, version: Version) -> None:
        self._counts.add("kube", "delete credential")
        super().delete_credential(name, version)


def apiserver_secret_requests(plane: ControlPlane) -> collections.Counter[str]:
    """``apiserver_request_total`` for Secrets, by verb (what the apiserver served)."""
    with plane.http_client() as http:
        text = http.get("/metrics").text
    counts: collections.Counter[str] = collections.Counter()
    for labels, value in samples(text, "apiserver_request_total").items():
        fields = dict(labels)
        if fields.get("resource") == "secrets":
            counts[fields.get("verb", "?")] += int(value)
    return counts


# --------------------------------------------------------------------------- timing


@dataclass
class Phases:
    """Seconds spent in each part of the last pass (desired state, observe, plan, apply)."""

    seconds: dict[str, float] = field(default_factory=dict)

    def timed(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    def timed_async(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await call(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

        return wrapper


@dataclass(frozen=True)
class Row:
    name: str
    seconds: float
    phases: dict[str, float]
    harbor: dict[str, int]
    kube: dict[str, int]
    served: dict[str, int]
    plan: str
    stall: float


# --------------------------------------------------------------------------- setup


@contextmanager
def harbor_process(projects: list[str]) -> Iterator[str]:
    """The Harbor fake in another process; its URL."""
    process = subprocess.Popen(
        [sys.executable, "-c", HARBOR_SCRIPT, str(REPO), ",".join(projects)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"the Harbor fake did not start: {url!r}")
        yield url
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def create_namespaces(plane: ControlPlane, names: dict[str, str], threads: int) -> None:
    """Create the labelled namespaces (and spacegate's own) with a few parallel clients."""
    local = threading.local()

    def core() -> Any:
        if not hasattr(local, "core"):
            local.core = client.CoreV1Api(
                config.new_client_from_config(config_file=str(plane.kubeconfig))  # type: ignore[no-untyped-call]
            )
        return local.core

    def create(item: tuple[str, str | None]) -> None:
        name, ws = item
        labels = {LABEL: ws} if ws else {}
        core().create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
        )

    items: list[tuple[str, str | None]] = [(HOME, None), *names.items()]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, items))


def config_text(url: str, workspaces: int, spaces: int, extra: dict[int, int]) -> str:
    """The config: each workspace bound to its own ``spaces`` private projects (plus
    ``extra[w]`` more for workspace w)."""
    lines = [
        f"workspaceLabel: {LABEL}",
        "policy:",
        f"  pullSecretName: {SECRET}",
        "  namespaceGuard: {enabled: true}",  # provisioning requires it
        "registries:",
        "  - name: harbor",
        "    type: harbor",
        f"    url: {url}",
        "    credentials: {usernameFile: CREDS/username, passwordFile: CREDS/password}",
        "bindings:",
    ]
    for w in range(workspaces):
        for k in range(spaces + extra.get(w, 0)):
            lines.append(
                f"  - {{registry: harbor, space: {project(w, k)}, workspaces: [{workspace(w)}]}}"
            )
    lines += ["pullSecrets:", "  provision: true", f"  credentialsNamespace: {HOME}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the passes


def run_pass(
    name: str,
    plane: ControlPlane,
    provisioner: Provisioner,
    snapshot: Snapshot,
    counts: Counts,
    phases: Phases,
) -> Row:
    counts.reset()
    phases.seconds.clear()
    served_before = apiserver_secret_requests(plane)

    stall = 0.0

    async def once() -> Any:
        # ``serve`` runs the provisioner on the event loop that answers admission requests:
        # the longest time a 10 ms timer waited beyond its due time is how long an admission
        # request arriving on the leader would have waited too.
        nonlocal stall
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal stall
            while not done.is_set():
                due = loop.time() + 0.01
                await asyncio.sleep(0.01)
                stall = max(stall, loop.time() - due)

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0.02)  # the ticker is waiting on its timer before the pass starts
        try:
            return await provisioner.run_pass(snapshot)
        finally:
            done.set()
            await ticking
            await provisioner.aclose()

    started = time.perf_counter()
    result = asyncio.run(once())
    seconds = time.perf_counter() - started
    served_after = apiserver_secret_requests(plane)
    served = {verb: served_after[verb] - served_before.get(verb, 0) for verb in served_after}
    the_plan = result.plan
    summary = (
        f"{len(the_plan.create_robots)} robots new, {len(the_plan.write_secrets)} Secrets "
        f"written, {len(the_plan.delete_secrets)} deleted, {len(the_plan.delete_robots)} "
        f"robots deleted"
    )
    if result.failures:
        summary += f"; {len(result.failures)} FAILURES: {result.failures[:3]}"
    row = Row(
        name,
        seconds,
        dict(phases.seconds),
        dict(counts.harbor),
        dict(counts.kube),
        {verb: n for verb, n in served.items() if n},
        summary,
        stall,
    )
    print_row(row)
    return row


def print_row(row: Row) -> None:
    phases = ", ".join(f"{k} {v:.2f}s" for k, v in row.phases.items())
    harbor = ", ".join(f"{k} {v}" for k, v in sorted(row.harbor.items()))
    kube = ", ".join(f"{k} {v}" for k, v in sorted(row.kube.items()))
    served = ", ".join(f"{k} {v}" for k, v in sorted(row.served.items()))
    print(f"\n== {row.name}: {row.seconds:.2f} s  ({row.plan})", flush=True)
    print(f"   phases:    {phases}; longest event-loop stall {row.stall:.2f}s")
    print(f"   Harbor:    {harbor or '-'}")
    print(f"   store:     {kube or '-'}")
    print(f"   apiserver: {served or '-'} (Secret requests served)")


def writes(row: Row) -> int:
    """apiserver writes on Secrets as served (create, update, patch, delete)."""
    return sum(n for verb, n in row.served.items() if verb in ("POST", "PUT", "PATCH", "DELETE"))


def harbor_writes(row: Row) -> int:
    return row.harbor.get("create robot", 0) + row.harbor.get("delete robot", 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspaces", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=10, help="per workspace")
    parser.add_argument("--spaces", type=int, default=5, help="bound private spaces per workspace")
    parser.add_argument("--threads", type=int, default=8, help="clients creating namespaces")
    parser.add_argument("--quiet", type=float, default=10.0, help="seconds of quiet probing")
    parser.add_argument("--no-probe", action="store_true", help="no admission probe")
    parser.add_argument(
        "--workers", type=int, default=DEFAULT_WORKERS, help="apiserver writes in flight"
    )
    args = parser.parse_args()
    workspaces, per_ws, spaces = args.workspaces, args.namespaces, args.spaces
    changed = min(7, workspaces - 1)  # the workspace whose binding changes

    projects = [project(w, k) for w in range(workspaces) for k in range(spaces + 1)]
    namespaces = {f"ns-{w:04d}-{i}": workspace(w) for w in range(workspaces) for i in range(per_ws)}
    print(
        f"provisioning: {workspaces} workspaces x {per_ws} namespaces x {spaces} bound "
        f"private spaces ({len(namespaces)} namespaces, {len(projects)} Harbor projects); "
        f"{args.workers} apiserver writes in flight",
        flush=True,
    )
    started = time.perf_counter()
    with harbor_process(projects) as url, ControlPlane(controllers=()) as plane:
        print(
            f"setup: Harbor fake at {url} (another process); control plane up in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        began = time.perf_counter()
        create_namespaces(plane, namespaces, args.threads)
        print(
            f"setup: {len(namespaces) + 1} namespaces created in "
            f"{time.perf_counter() - began:.1f} s ({args.threads} clients)",
            flush=True,
        )

        creds = plane.workdir / "harbor-admin"
        creds.mkdir()
        (creds / "username").write_text("admin\n")
        (creds / "password").write_text("Harbor12345\n")

        def load(extra: dict[int, int]) -> tuple[Config, float]:
            text = config_text(url, workspaces, spaces, extra).replace("CREDS", str(creds))
            began = time.perf_counter()
            loaded = load_config(text)
            return loaded, time.perf_counter() - began

        api = config.new_client_from_config(config_file=str(plane.kubeconfig))  # type: ignore[no-untyped-call]
        began = time.perf_counter()
        listed = fetch_namespaces(api, LABEL)
        list_seconds = time.perf_counter() - began
        harbor_spaces = dict.fromkeys(projects, False) | {"library": True}

        base, load_seconds = load({})
        bound, _ = load({changed: 1})
        print(
            f"setup: config with {len(base.bindings)} bindings parsed in {load_seconds:.2f} s; "
            f"{len(listed)} namespaces listed in {list_seconds:.2f} s",
            flush=True,
        )

        def snapshot(loaded: Config, version: int) -> Snapshot:
            return Snapshot.build(
                loaded, spaces={"harbor": harbor_spaces}, namespaces=listed, version=version
            )

        counts = Counts()
        phases = Phases()
        # run_pass looks these up in its module: time them where they are called.
        for attribute, label in (
            ("desired_state", "desired state"),
            ("plan_robots", "plan"),
            ("plan_secrets", "plan"),
        ):
            original = getattr(provisioner_module, attribute)
            setattr(provisioner_module, attribute, phases.timed(label, original))
        store = CountingStore(api, counts)
        provisioner = Provisioner(
            store, lambda registry: CountingRobots(registry, counts), workers=args.workers
        )
        # Robots are created (step 1: "robots"), then Secrets written and leftovers deleted
        # (step 2: "apply").
        for method, label in (
            ("observe", "observe"),
            ("_create_robots", "robots"),
            ("_apply", "apply"),
        ):
            setattr(provisioner, method, phases.timed_async(label, getattr(provisioner, method)))

        with contextlib.ExitStack() as probing:
            probe: AdmissionProbe | None = None
            quiet: list[float] = []
            if not args.no_probe:
                _, probe_namespace = probing.enter_context(
                    serving_webhooks(plane, api, plane.workdir / "probe")
                )
                probe = probing.enter_context(AdmissionProbe(plane, probe_namespace))
                time.sleep(1)  # connections warm
                quiet = probe.quiet(args.quiet)
            began_at = time.time()
            scratch = run_pass(
                "from scratch", plane, provisioner, snapshot(base, 1), counts, phases
            )
            during = [] if probe is None else probe.between(began_at, time.time())
            probe_errors = 0 if probe is None else probe.errors
        throttled = provisioner.throttle.throttled
        rows = [
            scratch,
            run_pass("no change", plane, provisioner, snapshot(base, 2), counts, phases),
            run_pass(
                f"bind one more space to {workspace(changed)}",
                plane,
                provisioner,
                snapshot(bound, 3),
                counts,
                phases,
            ),
            run_pass(
                f"unbind it from {workspace(changed)}",
                plane,
                provisioner,
                snapshot(base, 4),
                counts,
                phases,
            ),
        ]
        leaver = f"ns-{changed:04d}-0"
        with_leaver = dict(listed)
        listed = {**listed, leaver: NamespaceInfo(workspace=None)}
        rows.append(
            run_pass(
                f"one namespace leaves {workspace(changed)}",
                plane,
                provisioner,
                snapshot(base, 5),
                counts,
                phases,
            )
        )
        listed = with_leaver
        rows.append(
            run_pass("it joins again", plane, provisioner, snapshot(base, 6), counts, phases)
        )
        api.close()

    print(
        "\n| pass | seconds | desired state | observe | robots | apply | loop stall | "
        "Harbor calls (HTTP) | Harbor writes | apiserver Secret writes | "
        "apiserver Secret reads |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        http = sum(n for k, n in row.harbor.items() if k.startswith("http "))
        calls = sum(n for k, n in row.harbor.items() if not k.startswith("http "))
        reads = sum(n for verb, n in row.served.items() if verb in ("LIST", "GET", "WATCH"))
        print(
            f"| {row.name} | {row.seconds:.2f} | {row.phases.get('desired state', 0):.2f} | "
            f"{row.phases.get('observe', 0):.2f} | {row.phases.get('robots', 0):.2f} | "
            f"{row.phases.get('apply', 0):.2f} | "
            f"{row.stall:.2f} | {calls} ({http}) | {harbor_writes(row)} | {writes(row)} | {reads} |"
        )
    change = rows[2]
    print(
        f"\nOne binding change: {writes(change)} apiserver writes for a workspace of {per_ws} "
        f"namespaces (O(all) would be {len(namespaces)}), {harbor_writes(change)} Harbor "
        f"writes, {change.seconds:.2f} s (target <= {TARGET_SECONDS:.0f} s: "
        f"{'met' if change.seconds <= TARGET_SECONDS else 'NOT met'})."
    )
    print(
        f"Longest event-loop stall in a pass: {max(r.stall for r in rows):.2f} s (admission "
        "answers on the leader wait that long: the pass runs on serve's event loop)."
    )
    met = scratch.seconds <= SCRATCH_TARGET_SECONDS
    print(
        f"From scratch: {scratch.seconds:.2f} s (target <= {SCRATCH_TARGET_SECONDS:.0f} s: "
        f"{'met' if met else 'NOT met'}); 429s from the apiserver over all passes: {throttled}."
    )
    if quiet and during:
        q99, d99 = percentile(quiet, 0.99) * 1000, percentile(during, 0.99) * 1000
        ratio = d99 / q99
        print(
            f"Admission through the apiserver (dry-run Pod create, 20/s): quiet p50 "
            f"{percentile(quiet, 0.5) * 1000:.1f} ms p99 {q99:.1f} ms ({len(quiet)} creates); "
            f"during the pass from scratch p50 {percentile(during, 0.5) * 1000:.1f} ms p99 "
            f"{d99:.1f} ms ({len(during)} creates, {probe_errors} errors): {ratio:.2f}x "
            f"(target <= {P99_FACTOR}x: {'met' if ratio <= P99_FACTOR else 'NOT met'})."
        )
    print(f"Peak RSS of this process (provisioner, client side only): {peak_rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
