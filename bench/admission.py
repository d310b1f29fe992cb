"""Admission throughput and latency over TLS, against a bare Starlette ceiling.

What it measures: reviews per second and p50/p99 latency for ``POST /validate`` and
``POST /mutate`` with a realistic ~3 KB Pod review (kubectl-style metadata, two
containers, one image from a private Harbor space so ``/mutate`` returns a patch), over
TLS with keep-alive, at 1 and 16 concurrent connections.

How: the server is started the way ``make run`` starts it (``spacegate serve``, one
uvicorn worker; ``python -c 'from webhook.cli.serve import serve; ...'`` when the console
script is missing), pinned to CPU 0 with ``taskset``; the load generator is Debian
``wrk`` with ``bench/wrk/admission.lua``, pinned to CPU 1. The same load then hits
``bench/bare_app.py`` (Starlette + uvicorn over the same TLS files, answering a constant
AdmissionReview), the ceiling any Python admission server on this stack can reach.

Targets: throughput >= 0.7 x bare, p99 <= 10 ms at 16 connections. Figures, not a test:
it prints a table and exits 0 whatever the numbers are (2 when a tool is missing).

Run: ``.venv/bin/python bench/admission.py [--duration 10]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from certs.files import ensure_dev_certs  # noqa: E402

WORK = REPO / ".bench" / "admission"
LUA = REPO / "bench" / "wrk" / "admission.lua"
ENDPOINTS = ("validate", "mutate")
SERVER_CPU = "0"
LOAD_CPU = "1"


def pod_review() -> dict[str, Any]:
    """A Pod CREATE as the apiserver sends it for ``kubectl apply`` (about 3 KB)."""
    container = {
        "name": "web",
        "image": "harbor.demo.local/team-a/web:1.4.2",
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "env": [
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
            "periodSeconds": 10,
            "timeoutSeconds": 1,
        },
        "volumeMounts": [
            {
                "name": "kube-api-access-x7k2p",
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                "readOnly": True,
            }
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    sidecar = {
        "name": "log-shipper",
        "image": "harbor.demo.local/library/fluent-bit:3.1",
        "imagePullPolicy": "IfNotPresent",
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-6f7c9d8b5-q2x4z",
            "generateName": "web-6f7c9d8b5-",
            "namespace": "team-a-dev",
            "uid": "0d8f2a4c-6b1e-4f3a-9c2d-7e5b8a1f3c64",
            "labels": {"app.kubernetes.io/name": "web", "pod-template-hash": "6f7c9d8b5"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-20T10:00:00Z"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-6f7c9d8b5",
                    "uid": "5a1d7c3e-2f4b-4e8a-b6c9-1d3f5e7a9b2c",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "containers": [container, sidecar],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
            "volumes": [
                {
                    "name": "kube-api-access-x7k2p",
                    "projected": {
                        "defaultMode": 420,
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
                        ],
                    },
                }
            ],
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
        },
        "status": {},
    }
    gvk = {"group": "", "version": "v1", "kind": "Pod"}
    gvr = {"group": "", "version": "v1", "resource": "pods"}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "b6f0e3a2-7c41-4d8e-9a15-2e6c0f4b8d73",
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "namespace": "team-a-dev",
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "3c5e7a9b-1d2f-4a6c-8e0b-9f7d5c3a1e2b",
                "groups": [
                    "system:serviceaccounts",
                    "system:serviceaccounts:kube-system",
                    "system:authenticated",
                ],
            },
            "object": obj,
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


@dataclass(frozen=True)
class Result:
    target: str
    endpoint: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(cpu: str, command: Sequence[str]) -> list[str]:
    return ["taskset", "-c", cpu, *command] if shutil.which("taskset") else list(command)


def spacegate_command(port: int, cert_dir: Path) -> list[str]:
    """``spacegate serve`` as ``make run`` runs it, on another port and cert dir."""
    script = Path(sys.executable).with_name("spacegate")
    if script.exists():
        return [str(script), "serve", "--port", str(port), "--cert-dir", str(cert_dir)]
    code = (
        "import sys; from webhook.cli.serve import serve; "
        f"sys.exit(serve(config=None, host='127.0.0.1', port={port}, cert_dir={str(cert_dir)!r}, "
        "tls_cert=None, tls_key=None))"
    )
    return [sys.executable, "-c", code]


def bare_command(port: int, cert_dir: Path) -> list[str]:
    return [
        sys.executable,
        str(REPO / "bench" / "bare_app.py"),
        "--port",
        str(port),
        "--tls-cert",
        str(cert_dir / "tls.crt"),
        "--tls-key",
        str(cert_dir / "tls.key"),
    ]


@contextlib.contextmanager
def running(name: str, command: list[str], port: int, log: Path) -> Iterator[None]:
    """Start a server pinned to the server CPU; stop it with SIGTERM afterwards."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with log.open("w") as out:
        proc = subprocess.Popen(
            pinned(SERVER_CPU, command), cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited with {proc.returncode}; see {log}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name} did not start; see {log}") from None
                time.sleep(0.1)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def wrk(url: str, body: Path, connections: int, duration: float) -> dict[str, Any]:
    command = pinned(
        LOAD_CPU,
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "5s",
            "-s",
            str(LUA),
            url,
            "--",
            str(body),
        ],
    )
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    for line in output.splitlines():
        if line.startswith("WRK_JSON "):
            data: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
            return data
    raise SystemExit(f"wrk printed no result:\n{output}")


def one_run(
    target: str, port: int, endpoint: str, body: Path, conns: int, seconds: float
) -> Result:
    data = wrk(f"https://127.0.0.1:{port}/{endpoint}", body, conns, seconds)
    elapsed = data["duration_us"] / 1e6
    return Result(
        target=target,
        endpoint=endpoint,
        connections=conns,
        rps=data["requests"] / elapsed,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=data["errors"],
    )


def median_result(runs: list[Result]) -> Result:
    """The run with the median throughput (its own latencies, not a mix of runs)."""
    ordered = sorted(runs, key=lambda r: r.rps)
    middle = ordered[len(ordered) // 2]
    return Result(**{**middle.__dict__, "errors": sum(r.errors for r in runs)})


def measure(
    ports: dict[str, int],
    body: Path,
    connections: Sequence[int],
    duration: float,
    warmup: float,
    rounds: int,
) -> list[Result]:
    """Alternate spacegate and bare runs, ``rounds`` times per configuration.

    Interleaving matters on a shared machine: a neighbour's CPU burst then hurts both
    targets alike instead of whichever happened to run at that moment. The median run
    of each target is reported.
    """
    results = []
    for endpoint in ENDPOINTS:
        for conns in connections:
            runs: dict[str, list[Result]] = {target: [] for target in ports}
            for port in ports.values():
                if warmup > 0:
                    wrk(f"https://127.0.0.1:{port}/{endpoint}", body, conns, warmup)
            for _ in range(rounds):
                for target, port in ports.items():
                    runs[target].append(one_run(target, port, endpoint, body, conns, duration))
            for target in ports:
                best = median_result(runs[target])
                results.append(best)
                spread = ", ".join(f"{r.rps:.0f}" for r in runs[target])
                print(
                    f"  {target:9} /{endpoint:8} c={conns:<3} {best.rps:8.0f} req/s  "
                    f"p50 {best.p50_ms:6.2f} ms  p99 {best.p99_ms:6.2f} ms   (runs: {spread})",
                    flush=True,
                )
    return results


def check_replies(port: int, body: bytes, ca: Path) -> None:
    """One request per endpoint: the benchmark must measure real decisions, not errors."""
    import httpx

    context = ssl.create_default_context(cafile=str(ca))
    with httpx.Client(verify=context) as client:
        headers = {"Content-Type": "application/json"}
        validate = client.post(f"https://127.0.0.1:{port}/validate", content=body, headers=headers)
        mutate = client.post(f"https://127.0.0.1:{port}/mutate", content=body, headers=headers)
    assert validate.json()["response"]["allowed"] is True, validate.text
    assert mutate.json()["response"]["patchType"] == "JSONPatch", mutate.text


def table(results: list[Result]) -> str:
    by_key = {(r.target, r.endpoint, r.connections): r for r in results}
    lines = [
        f"{'endpoint':9} {'conns':>5} | {'spacegate req/s':>15} {'p50 ms':>7} {'p99 ms':>7} | "
        f"{'bare req/s':>10} {'p50 ms':>7} {'p99 ms':>7} | {'ratio':>5}",
        "-" * 92,
    ]
    for endpoint in ENDPOINTS:
        for conns in sorted({r.connections for r in results}):
            ours = by_key[("spacegate", endpoint, conns)]
            bare = by_key[("bare", endpoint, conns)]
            lines.append(
                f"/{endpoint:8} {conns:>5} | {ours.rps:>15.0f} {ours.p50_ms:>7.2f} "
                f"{ours.p99_ms:>7.2f} | {bare.rps:>10.0f} {bare.p50_ms:>7.2f} "
                f"{bare.p99_ms:>7.2f} | {ours.rps / bare.rps:>5.2f}"
            )
    return "\n".join(lines)


def verdicts(results: list[Result]) -> list[str]:
    by_key = {(r.target, r.endpoint, r.connections): r for r in results}
    out = []
    for endpoint in ENDPOINTS:
        for conns in sorted({r.connections for r in results}):
            ours = by_key[("spacegate", endpoint, conns)]
            ratio = ours.rps / by_key[("bare", endpoint, conns)].rps
            out.append(
                f"/{endpoint} c={conns}: throughput {ratio:.2f} x bare "
                f"({'meets' if ratio >= 0.7 else 'BELOW'} 0.7)"
                + (
                    f"; p99 {ours.p99_ms:.2f} ms "
                    f"({'meets' if ours.p99_ms <= 10 else 'ABOVE'} 10 ms)"
                    if conns >= 16
                    else ""
                )
            )
    errors = sum(r.errors for r in results)
    out.append(f"socket/status errors during the runs: {errors}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per target and setting")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per run")
    parser.add_argument("--connections", default="1,16", help="comma-separated counts")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print(
            "bench/admission.py needs wrk (Debian package wrk; make system-deps)", file=sys.stderr
        )
        return 2
    connections = [int(c) for c in args.connections.split(",")]

    WORK.mkdir(parents=True, exist_ok=True)
    certs = ensure_dev_certs(WORK / "certs")
    review = json.dumps(pod_review(), separators=(",", ":")).encode()
    body = WORK / "pod-review.json"
    body.write_bytes(review)
    print(
        f"admission benchmark: {len(review)} byte Pod review, {args.rounds} x "
        f"{args.duration:g}s per target and setting, "
        f"server on CPU {SERVER_CPU}, wrk on CPU {LOAD_CPU}, connections {connections}",
        flush=True,
    )

    ports = {"spacegate": free_port(), "bare": free_port()}
    with (
        running(
            "spacegate",
            spacegate_command(ports["spacegate"], certs.cert.parent),
            ports["spacegate"],
            WORK / "spacegate.log",
        ),
        running(
            "bare", bare_command(ports["bare"], certs.cert.parent), ports["bare"], WORK / "bare.log"
        ),
    ):
        check_replies(ports["spacegate"], review, certs.ca_cert)
        results = measure(ports, body, connections, args.duration, args.warmup, args.rounds)

    print()
    print(table(results))
    print()
    for line in verdicts(results):
        print(line)
    (WORK / "results.json").write_text(json.dumps([r.__dict__ for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
