"""Why the image selector runs in a process of its own: the alternatives, measured.

``spacegate serve`` runs the selector in a child process (``webhook/selector/process.py``).
This script measures what the two in-process alternatives would do to admission: the
selector's uvicorn server on the admission server's event loop, or in a thread of the same
process with its own event loop. Both apps are the real ones (``create_app`` and
``create_selector_app`` over a Harbor fake of 2,000 repositories, token checks stubbed to
allow: the reviews are cached in production anyway); the process is pinned to CPU 0, the
load generators (``wrk``) to CPU 1. For each variant: ``/validate`` p99 at one connection
with the selector idle, then while 16 connections fetch warm repository pages.
``bench/selector.py`` measures the production layout (its own process) the same way.

Usage: ``python bench/selector_colocated.py [--seconds 8]`` (needs wrk and taskset).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import uvicorn  # noqa: E402
from selector import ADMISSION_LUA, LUA, NAMESPACE, review_body, wrk  # noqa: E402

from certs.files import ensure_dev_certs  # noqa: E402
from policy.config import load_config  # noqa: E402
from policy.snapshot import NamespaceInfo, Snapshot  # noqa: E402
from tests.fakes.harbor import ADMIN_PASSWORD, ADMIN_USER, HarborFake  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from webhook.admission.app import AppSettings, create_app, static_state  # noqa: E402
from webhook.admission.server import build_server  # noqa: E402
from webhook.clients.access import Identity, ResourceAccess  # noqa: E402
from webhook.selector.app import create_selector_app  # noqa: E402
from webhook.selector.catalog import Catalog  # noqa: E402

SERVER_CPU, LOAD_CPU = "0", "1"


class Allow:
    async def check(self, authorization: str | None, attributes: ResourceAccess) -> Identity:
        return Identity("bench")


def selector_server(snapshot: Snapshot, port: int, context: ssl.SSLContext) -> uvicorn.Server:
    app = create_selector_app(Catalog(lambda: snapshot), Allow())
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ssl_context_factory=lambda _c, _d: context,
        http="httptools",
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    return uvicorn.Server(config)


def measure(variant: str, seconds: int, work: Path, harbor: HarborFake) -> tuple[float, float]:
    (work / "u").write_text(ADMIN_USER)
    (work / "p").write_text(ADMIN_PASSWORD)
    config = load_config(
        f"""
registries:
  - {{name: harbor, type: harbor, url: {harbor.url}, hosts: [harbor.demo.local],
     credentials: {{usernameFile: {work / "u"}, passwordFile: {work / "p"}}}}}
bindings: [{{registry: harbor, space: team-a, workspaces: ["101"]}}]
"""
    )
    snapshot = Snapshot.build(
        config,
        spaces={"harbor": {"team-a": False}},
        namespaces={NAMESPACE: NamespaceInfo("101")},
    )
    certs = ensure_dev_certs(work / "certs")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert, certs.key)
    admission_port, selector_port = free_port(), free_port()
    admission = build_server(
        create_app(AppSettings(state=static_state(snapshot))),
        host="127.0.0.1",
        port=admission_port,
        tls=context,
    )
    selector = selector_server(snapshot, selector_port, context)

    async def both_on_one_loop() -> None:
        await asyncio.gather(admission.serve(), selector.serve())

    threads = []
    if variant == "same event loop":
        threads.append(threading.Thread(target=lambda: asyncio.run(both_on_one_loop())))
    else:
        threads.append(threading.Thread(target=lambda: asyncio.run(admission.serve())))
        threads.append(threading.Thread(target=lambda: asyncio.run(selector.serve())))
    for thread in threads:
        thread.start()
    while not (admission.started and selector.started):
        time.sleep(0.05)
    paths = [
        f"/api/v1/namespaces/{NAMESPACE}/repositories?registry=harbor&space=team-a&page={p}&limit=50"
        for p in range(1, 41)
    ]
    (work / "paths.txt").write_text("\n".join(paths))
    (work / "token").write_text("bench")
    review_body(work / "review.json")
    selector_url = f"https://127.0.0.1:{selector_port}"
    args = [str(work / "token"), str(work / "paths.txt")]
    wrk(LOAD_CPU, selector_url, LUA, args, 4, 3)  # warm every page
    time.sleep(3)  # the space's whole list is fetched in the background: let it finish
    wrk(LOAD_CPU, selector_url, LUA, args, 4, 2)
    validate = f"https://127.0.0.1:{admission_port}/validate"
    review = [str(work / "review.json")]
    wrk(LOAD_CPU, validate, ADMISSION_LUA, review, 1, 2)  # warm-up
    idle = wrk(LOAD_CPU, validate, ADMISSION_LUA, review, 1, seconds)["p99_us"] / 1000
    hammer = subprocess.Popen(
        ["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c16", f"-d{seconds + 2}s",
         "-s", str(LUA), selector_url, "--", *args],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1)
    busy = wrk(LOAD_CPU, validate, ADMISSION_LUA, review, 1, seconds)["p99_us"] / 1000
    hammer.wait()
    admission.should_exit = selector.should_exit = True
    for thread in threads:
        thread.join(30)
    return idle, busy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    options = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        print("needs wrk and taskset (make system-deps)", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {int(SERVER_CPU)})
    rows: list[Any] = []
    with HarborFake() as harbor:
        harbor.add_project("team-a", public=False)
        harbor.add_repositories("team-a", [f"service-{n:04d}" for n in range(2000)], ("1.0",))
        for variant in ("same event loop", "thread with its own loop"):
            work = Path(tempfile.mkdtemp(prefix="spacegate-colocated-"))
            try:
                rows.append((variant, *measure(variant, options.seconds, work, harbor)))
            finally:
                shutil.rmtree(work, ignore_errors=True)
    print("| selector placement | /validate p99 idle | while hammered | ratio |")
    print("| --- | --- | --- | --- |")
    for variant, idle, busy in rows:
        print(f"| {variant} | {idle:.2f} ms | {busy:.2f} ms | {busy / idle:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
