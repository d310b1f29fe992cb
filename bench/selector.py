"""The image selector under load, and what it does to admission meanwhile.

On the e2e control plane (real TokenReview/SubjectAccessReview, a real ServiceAccount token
bound to the built-in ``view`` role), ``spacegate serve`` runs in live mode with its selector
listener; Harbor is the HTTP-level fake with a space of 2,000 repositories × 20 tags
(``team-a``) and eight more spaces of 2,000 repositories for cold first pages. The serving
process is pinned to CPU 0 and its selector child to CPU 1, where the selector's load
generator runs too; the admission load generator shares CPU 0 with the admission server.

Printed, against the targets of issue 16:

- warm repository pages (rotating over 40 pages of 50) and warm tag pages (rotating over
  200 repositories' tags) at 16 concurrent connections (``wrk``): p50/p99, target p99 ≤ 20 ms;
- a cold first page (a space never listed) against Harbor's own response time for that page
  asked directly just before, eight spaces, the median of the ratios: target ≤ 1.5×;
- ``/validate`` p99 with the selector idle and while it is hammered, alternating three times
  in this run: target hammered ≤ 1.2 × idle;
- the selector process's peak RSS.

Usage: ``python bench/selector.py [--seconds 10]``. Needs wrk and the e2e control plane
(``make controlplane``); ``SPACEGATE_SKIP_E2E=1`` skips it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fakes.harbor import ADMIN_PASSWORD, ADMIN_USER, HarborFake  # noqa: E402
from tests.support.access import (  # noqa: E402
    bind,
    chart_access_roles,
    ensure_namespace,
    service_account,
    token,
)
from tests.support.controlplane.plane import ControlPlane  # noqa: E402
from tests.support.manifests import apply_manifests  # noqa: E402
from tests.support.selector_world import WS, can_list_images  # noqa: E402
from tests.support.spacegate import SpacegateProcess  # noqa: E402
from tests.support.waiting import eventually  # noqa: E402

LUA = REPO / "bench" / "wrk" / "selector.lua"
ADMISSION_LUA = REPO / "bench" / "wrk" / "admission.lua"
SERVER_CPU, SELECTOR_CPU = "0", "1"
REPOSITORIES, TAGS, COLD_SPACES = 2000, 20, 8
NAMESPACE = "bench-selector"


def pin(pid: int, cpu: str) -> None:
    for task in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(task), {int(cpu)})


def selector_child(pid: int) -> int:
    """The selector process among ``pid``'s children (not multiprocessing's resource tracker)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split():
            command = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in command and b"resource_tracker" not in command:
                return int(child)
    raise SystemExit("no selector process found")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wrk(
    cpu: str, url: str, lua: Path, args: list[str], connections: int, seconds: int
) -> dict[str, Any]:
    command = ["taskset", "-c", cpu, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
               "--timeout", "5s", "-s", str(lua), url, "--", *args]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    for line in output.splitlines():
        if line.startswith("WRK_JSON "):
            data: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
            if data["errors"]:
                raise SystemExit(f"wrk saw {data['errors']} errors on {url}")
            return data
    raise SystemExit(f"wrk printed no result:\n{output}")


def pages(data: dict[str, Any]) -> str:
    """``p50 / p99 ms (pages/s)`` of a wrk result."""
    rate = data["requests"] / (data["duration_us"] / 1e6)
    return f"{data['p50_us'] / 1000:.1f} / {data['p99_us'] / 1000:.1f} ms ({rate:,.0f} pages/s)"


def config(harbor: HarborFake, work: Path) -> str:
    (work / "u").write_text(ADMIN_USER)
    (work / "p").write_text(ADMIN_PASSWORD)
    spaces = ["team-a", *(f"cold-{n}" for n in range(COLD_SPACES))]
    bindings = "\n".join(
        f'  - {{registry: harbor, space: {s}, workspaces: ["101"]}}' for s in spaces
    )
    return f"""
workspaceLabel: {WS}
registries:
  - name: harbor
    type: harbor
    url: {harbor.url}
    hosts: [harbor.demo.local]
    credentials: {{usernameFile: {work / "u"}, passwordFile: {work / "p"}}}
bindings:
{bindings}
"""


def review_body(path: Path) -> None:
    container = {"name": "web", "image": "harbor.demo.local/team-a/web:1.0"}
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0d8f5e1c-bench",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": NAMESPACE,
            "operation": "CREATE",
            "userInfo": {"username": "bench"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web"},
                "spec": {"containers": [container]},
            },
        },
    }
    path.write_text(json.dumps(review))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    options = parser.parse_args()
    if os.environ.get("SPACEGATE_SKIP_E2E") == "1":
        print("SPACEGATE_SKIP_E2E=1: skipping bench/selector.py")
        return 0
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        print("bench/selector.py needs wrk and taskset (make system-deps)", file=sys.stderr)
        return 2
    # This process (and the Harbor fake's thread) stays off the admission server's CPU.
    os.sched_setaffinity(0, {int(SELECTOR_CPU)})
    work = Path(tempfile.mkdtemp(prefix="spacegate-bench-selector-"))
    with ControlPlane() as plane, HarborFake() as harbor:
        began = time.monotonic()
        for project in ("team-a", *(f"cold-{n}" for n in range(COLD_SPACES))):
            harbor.add_project(project, public=False)
        names = [f"service-{n:04d}" for n in range(REPOSITORIES)]
        harbor.add_repositories("team-a", names, [f"1.{n}" for n in range(TAGS)])
        for n in range(COLD_SPACES):
            harbor.add_repositories(f"cold-{n}", names, ("1.0",))
        print(f"Harbor fake filled in {time.monotonic() - began:.1f}s")
        ensure_namespace(plane, NAMESPACE, {WS: "101"})
        apply_manifests(plane, chart_access_roles())
        service_account(plane, NAMESPACE, "dev")
        bind(plane, role="view", subject=(NAMESPACE, "dev"), namespace=NAMESPACE)
        eventually(
            lambda: can_list_images(plane, f"system:serviceaccount:{NAMESPACE}:dev", NAMESPACE),
            "aggregation",
        )
        (work / "token").write_text(token(plane, NAMESPACE, "dev"))
        process = SpacegateProcess(plane, work, config(harbor, work), selector=True)
        process.start()
        try:
            return run(options.seconds, plane, harbor, process, work)
        finally:
            process.stop()
            shutil.rmtree(work, ignore_errors=True)


def run(
    seconds: int, plane: ControlPlane, harbor: HarborFake, process: SpacegateProcess, work: Path
) -> int:
    selector_pid = selector_child(process.pid)
    pin(process.pid, SERVER_CPU)
    pin(selector_pid, SELECTOR_CPU)
    auth = {"Authorization": f"Bearer {(work / 'token').read_text()}"}
    base = f"/api/v1/namespaces/{NAMESPACE}"
    repo_paths = [
        f"{base}/repositories?registry=harbor&space=team-a&page={p}&limit=50" for p in range(1, 41)
    ]
    tag_paths = [
        f"{base}/repositories/harbor/team-a/service-{n:04d}/tags?limit=20"
        for n in range(0, REPOSITORIES, 10)
    ]
    (work / "repos.txt").write_text("\n".join(repo_paths))
    (work / "tags.txt").write_text("\n".join(tag_paths))

    # Cold first pages, against Harbor's own time for the same page.
    direct, cold = [], []
    with (
        process.selector_client() as http,
        httpx.Client(base_url=harbor.url, auth=(ADMIN_USER, ADMIN_PASSWORD)) as own,
    ):
        eventually(  # the selector has the snapshot with the namespace; token reviews cached
            lambda: http.get(f"{base}/spaces", headers=auth).status_code == 200, "the selector"
        )
        for n in range(COLD_SPACES):
            start = time.perf_counter()
            own.get(
                f"/api/v2.0/projects/cold-{n}/repositories",
                params={"page": 1, "page_size": 50, "sort": "name"},
            ).raise_for_status()
            direct.append(time.perf_counter() - start)
            start = time.perf_counter()
            answer = http.get(
                f"{base}/repositories",
                params={"registry": "harbor", "space": f"cold-{n}", "limit": 50},
                headers=auth,
            )
            cold.append(time.perf_counter() - start)
            time.sleep(3)  # its whole list is fetched in the background: let that end first
            assert answer.status_code == 200, answer.text
            assert answer.json()["total"] == REPOSITORIES, answer.text
        for path in [*repo_paths, *tag_paths]:  # warm every page the load will ask for
            http.get(path, headers=auth).raise_for_status()
        time.sleep(2)  # the background listings of the cold spaces finish
        for path in repo_paths:
            http.get(path, headers=auth).raise_for_status()

    url = process.selector_url
    token_file, reviews = str(work / "token"), work / "review.json"
    review_body(reviews)
    repos = wrk(SELECTOR_CPU, url, LUA, [token_file, str(work / "repos.txt")], 16, seconds)
    tags = wrk(SELECTOR_CPU, url, LUA, [token_file, str(work / "tags.txt")], 16, seconds)

    idle, busy = [], []
    validate = f"{process.url}/validate"
    wrk(SERVER_CPU, validate, ADMISSION_LUA, [str(reviews)], 1, 2)  # warm-up
    for _ in range(3):
        idle.append(
            wrk(SERVER_CPU, validate, ADMISSION_LUA, [str(reviews)], 1, seconds)["p99_us"] / 1000
        )
        hammer = subprocess.Popen(
            ["taskset", "-c", SELECTOR_CPU, "wrk", "-t1", "-c16", f"-d{seconds + 2}s",
             "-s", str(LUA), url, "--", token_file, str(work / "repos.txt")],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1)
        busy.append(
            wrk(SERVER_CPU, validate, ADMISSION_LUA, [str(reviews)], 1, seconds)["p99_us"] / 1000
        )
        hammer.wait()

    cold_ms, direct_ms = statistics.median(cold) * 1000, statistics.median(direct) * 1000
    ratio = statistics.median(c / d for c, d in zip(cold, direct, strict=True))
    idle_p99, busy_p99 = statistics.median(idle), statistics.median(busy)
    rows = [
        ("warm repository pages (50 per page): p50 / p99", pages(repos), "p99 ≤ 20 ms"),
        ("warm tag pages (20 per page): p50 / p99", pages(tags), "p99 ≤ 20 ms"),
        (
            f"cold first page vs Harbor's own answer just before (medians of {COLD_SPACES})",
            f"{cold_ms:.1f} ms vs {direct_ms:.1f} ms ({ratio:.2f}x)",
            "≤ 1.5x",
        ),
        (
            "/validate p99 idle / while the selector is hammered (median of 3)",
            f"{idle_p99:.2f} / {busy_p99:.2f} ms ({busy_p99 / idle_p99:.2f}x)",
            "≤ 1.2x",
        ),
        ("selector process peak RSS", f"{peak_rss_mb(selector_pid):.0f} MB", ""),
    ]
    print(f"\nselector: {REPOSITORIES} repositories x {TAGS} tags; 16 connections, {seconds}s")
    print("| what | measured | target |\n| --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    runs = "; ".join(f"{a:.2f} / {b:.2f}" for a, b in zip(idle, busy, strict=True))
    print(f"(/validate p99 idle / hammered per round, ms: {runs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
