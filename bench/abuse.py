"""Abuse: can a hostile client stall or bloat the admission server?

Four attacks, each against a fresh ``spacegate serve`` (the embedded demo config, as ``make
run``; pinned to CPU 0, the attackers are threads of this process on CPU 1) for
``--duration`` seconds, while one keep-alive client posts ordinary ~3 KB Pod reviews one
after another and another posts a genuine 294 KiB review every half second:

- ``huge`` — 16 senders of distinct AdmissionReviews whose image is a 2-3 MB string (each
  new, so nothing is answered from a cache): every one must be denied.
- ``header-bomb`` — 4 senders, each streaming one request header of up to 64 MiB on
  connection after connection: how many bytes the server took before it cut each one.
- ``slowloris`` — TCP connections opened at 300 a second that never send a byte (past
  the server's cap of 512 connections), and 32 TLS connections trickling a request head
  a byte every half second.
- ``idle-chunked`` — 64 connections at all times that send the head of a chunked review
  and then nothing.

For each it prints the ordinary reviews' p50/p99, the server's resident memory at start
and at its peak (``VmHWM``), the genuine large review's slowest answer, and for the
connection attacks how long the server held an attacker's connection at most (it must end
every one by its head or body deadline, 10 s each; the table sweeps every half second and a
body gets one more second) and whether any answer was wrong.

Targets (issue "The second attack round"): ordinary p99 <= 250 ms, peak RSS <= 150 MB, a
genuine large review answered within 2 s, no connection held past its deadline, no wrong
answer. Figures, not a test: it prints a table and exits 0 whatever the numbers are.

Run: ``.venv/bin/python bench/abuse.py [--duration 20] [--scenarios huge,slowloris]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import selectors
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from admission import free_port, pod_review, running, spacegate_command  # noqa: E402

from certs.files import ensure_dev_certs  # noqa: E402

WORK = REPO / ".bench" / "abuse"
HEADERS = {"Content-Type": "application/json"}
SCENARIOS = ("huge", "header-bomb", "slowloris", "idle-chunked")
# The server's defaults (webhook/admission/connections.py, bodies.py) and the sweep tick.
HEAD_DEADLINE = 10.0
BODY_DEADLINE = 10.0 + 1.0
SWEEP_SLACK = 0.6


def huge_review_parts(size: int) -> tuple[bytes, bytes]:
    """A Pod review split around the point where a unique suffix makes its image distinct."""
    review = pod_review()
    marker = "@@UNIQUE@@"
    image = "harbor.demo.local/library/" + "a" * size + marker
    review["request"]["object"]["spec"]["containers"][0]["image"] = image
    text = json.dumps(review, separators=(",", ":")).encode()
    head, _, tail = text.partition(marker.encode())
    return head, tail


def large_review() -> bytes:
    """A genuine review of 294 KiB (over the 256 KiB large-body threshold), denied."""
    review = pod_review()
    review["request"]["object"]["metadata"]["annotations"] = {"notes": "n" * (294 * 1024)}
    review["request"]["object"]["spec"]["containers"][0]["image"] = (
        "harbor.demo.local/team-b/api:1.0"
    )
    return json.dumps(review, separators=(",", ":")).encode()


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    answered: int = 0
    wrong: int = 0
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, seconds: float | None, right: bool) -> None:
        with self.lock:
            if seconds is None:
                self.errors += 1
                return
            self.latencies.append(seconds)
            self.answered += 1
            self.wrong += not right


@dataclass
class Held:
    """Attack connections: how many, and how long the server let them live."""

    opened: int = 0
    ended: int = 0
    longest: float = 0.0
    figures: list[float] = field(default_factory=list)  # per-attack numbers (bytes taken, ...)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def end(self, opened_at: float) -> None:
        with self.lock:
            self.ended += 1
            self.longest = max(self.longest, time.monotonic() - opened_at)


def rss_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def server_pid(port: int) -> int:
    """The pid of the process listening on ``port`` (the server, under taskset)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1].endswith(f":{port:04X}") and parts[3] == "0A":
            inode = parts[9]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return int(pid)
        except OSError:
            continue
    raise SystemExit(f"no process listens on port {port}")


@dataclass
class Target:
    port: int
    ca: Path
    stop: float  # the attack ends: nothing new is opened
    settle: float  # the connections still open are watched until then

    def settling(self) -> bool:
        return time.monotonic() < self.settle

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def running(self) -> bool:
        return time.monotonic() < self.stop

    def raw(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def tls(self) -> ssl.SSLSocket:
        return self.context().wrap_socket(self.raw(), server_hostname="localhost")


# --------------------------------------------------------------------------- honest clients


def poster(
    target: Target, body: Callable[[int], bytes], allowed: bool, tally: Tally, pause: float
) -> None:
    """Post reviews on one keep-alive connection until the end; check every answer."""
    with httpx.Client(base_url=target.url, verify=target.context(), timeout=30) as client:
        n = 0
        while target.running():
            started = time.perf_counter()
            try:
                response = client.post("/validate", content=body(n), headers=HEADERS)
                right = response.json()["response"]["allowed"] is allowed
                tally.add(time.perf_counter() - started, right)
            except (httpx.HTTPError, KeyError, ValueError):
                tally.add(None, False)
            n += 1
            time.sleep(pause)


# --------------------------------------------------------------------------- attacks


def huge_senders(target: Target, held: Held, abused: Tally, senders: int) -> list[threading.Thread]:
    parts = [huge_review_parts(2_000_000 + k * 125_000) for k in range(9)]  # 2-3 MB

    def send(n: int) -> None:
        head, tail = parts[n % len(parts)]
        poster(target, lambda i: head + f"{n}x{i}".encode() + tail, False, abused, 0.0)

    return [threading.Thread(target=send, args=(n,)) for n in range(senders)]


def header_bombs(target: Target, held: Held, _abused: Tally, _n: int) -> list[threading.Thread]:
    junk = b"a" * 65536

    def bomb() -> None:
        while target.running():
            opened = time.monotonic()
            sent = 0
            with contextlib.suppress(OSError), target.tls() as conn:
                held.opened += 1
                conn.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\nX-Bomb: ")
                while sent < 64 * 1024 * 1024 and target.running():
                    conn.sendall(junk)
                    sent += len(junk)
            held.end(opened)
            with held.lock:
                held.figures.append(sent)

    return [threading.Thread(target=bomb) for _ in range(4)]


class Watcher:
    """Sockets the attack holds open; records when the server ends each one."""

    def __init__(self, held: Held) -> None:
        self.held = held
        self.selector = selectors.DefaultSelector()
        self.lock = threading.Lock()

    def add(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        with self.lock:
            self.selector.register(sock, selectors.EVENT_READ, time.monotonic())
            self.held.opened += 1

    def count(self) -> int:
        with self.lock:
            return len(self.selector.get_map())

    def watch(self, target: Target) -> None:
        while target.settling() and (target.running() or self.count()):
            with self.lock:
                ready = self.selector.select(timeout=0) if self.selector.get_map() else []
            for key, _ in ready:
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    if sock.recv(65536):
                        continue  # a reply (408): the connection is still open
                except (ssl.SSLWantReadError, BlockingIOError):
                    continue
                except OSError:
                    pass
                with self.lock:
                    self.selector.unregister(sock)
                sock.close()
                self.held.end(key.data)
            time.sleep(0.02)

    def still_open(self) -> list[float]:
        now = time.monotonic()
        with self.lock:
            return [now - key.data for key in self.selector.get_map().values()]


def slowloris(target: Target, held: Held, _abused: Tally, _n: int) -> list[threading.Thread]:
    watcher = Watcher(held)

    def open_silent() -> None:
        while target.running():
            with contextlib.suppress(OSError):
                watcher.add(target.raw())
            time.sleep(1 / 300)

    def trickle() -> None:
        while target.running():
            try:
                conn = target.tls()
            except OSError:
                continue
            opened = time.monotonic()
            held.opened += 1
            try:
                for byte in b"POST /validate HTTP/1.1\r\nX-Slow: " + b"s" * 1000:
                    if not target.settling():
                        with held.lock:
                            held.figures.append(time.monotonic() - opened)  # never ended
                        return
                    conn.sendall(bytes([byte]))
                    # half a second between bytes, noticing at once when the server ends it
                    if select.select([conn], [], [], 0.5)[0] and not conn.recv(1024):
                        raise ConnectionResetError
            except OSError:
                held.end(opened)
            finally:
                conn.close()

    target_watch = threading.Thread(target=watcher.watch, args=(target,))
    threads = [target_watch, threading.Thread(target=open_silent)]
    threads += [threading.Thread(target=trickle) for _ in range(32)]
    _WATCHERS.append(watcher)
    return threads


def idle_chunked(target: Target, held: Held, _abused: Tally, _n: int) -> list[threading.Thread]:
    watcher = Watcher(held)
    head = (
        b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )

    def keep_64() -> None:
        while target.running():
            if watcher.count() < 64:
                with contextlib.suppress(OSError):
                    conn = target.tls()
                    conn.sendall(head)
                    watcher.add(conn)
            else:
                time.sleep(0.05)

    _WATCHERS.append(watcher)
    return [
        threading.Thread(target=watcher.watch, args=(target,)),
        threading.Thread(target=keep_64),
    ]


_WATCHERS: list[Watcher] = []
ATTACKS = {
    "huge": huge_senders,
    "header-bomb": header_bombs,
    "slowloris": slowloris,
    "idle-chunked": idle_chunked,
}


# --------------------------------------------------------------------------- one scenario


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run(name: str, duration: float, senders: int, certs_dir: Path, ca: Path) -> dict[str, Any]:
    port = free_port()
    _WATCHERS.clear()
    with running("spacegate", spacegate_command(port, certs_dir), port, WORK / f"{name}.log"):
        pid = server_pid(port)
        baseline = rss_kib(pid, "VmRSS")
        stop = time.monotonic() + duration
        target = Target(port, ca, stop, stop + max(HEAD_DEADLINE, BODY_DEADLINE) + 3)
        normal, large, abused, held = Tally(), Tally(), Tally(), Held()
        ordinary_body = json.dumps(pod_review(), separators=(",", ":")).encode()
        genuine = large_review()
        threads = ATTACKS[name](target, held, abused, senders)
        threads.append(
            threading.Thread(
                target=poster, args=(target, lambda _: ordinary_body, True, normal, 0.005)
            )
        )
        threads.append(
            threading.Thread(target=poster, args=(target, lambda _: genuine, False, large, 0.5))
        )
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        peak = rss_kib(pid, "VmHWM")
    still_open = [age for watcher in _WATCHERS for age in watcher.still_open()]
    if name == "slowloris":
        still_open += held.figures  # trickled heads the server never ended
    longest = max([held.longest, *still_open])
    limit = {"slowloris": HEAD_DEADLINE, "idle-chunked": BODY_DEADLINE}.get(name)
    return {
        "scenario": name,
        "ordinary_p50_ms": percentile(normal.latencies, 0.5) * 1000,
        "ordinary_p99_ms": percentile(normal.latencies, 0.99) * 1000,
        "ordinary_answered": normal.answered,
        "large_max_ms": max(large.latencies, default=float("nan")) * 1000,
        "large_answered": large.answered,
        "rss_start_mb": baseline / 1024,
        "rss_peak_mb": peak / 1024,
        "attack_connections": held.opened,
        "attack_ended_by_server": held.ended,
        "longest_held_s": longest,
        "deadline_s": limit,
        "bomb_bytes_median": percentile([float(b) for b in held.figures], 0.5),
        "huge_answered": abused.answered,
        "huge_refused": abused.errors,
        "wrong": normal.wrong + large.wrong + abused.wrong,
        "errors": normal.errors + large.errors,
    }


def verdict(result: dict[str, Any]) -> bool:
    ok = (
        result["ordinary_p99_ms"] <= 250
        and result["rss_peak_mb"] <= 150
        and result["large_max_ms"] <= 2000
        and not result["wrong"]
    )
    if result["deadline_s"] is not None:
        ok = ok and result["longest_held_s"] <= result["deadline_s"] + SWEEP_SLACK
    return bool(ok)


def print_result(result: dict[str, Any], duration: float) -> None:
    name = result["scenario"]
    print(f"{name} ({duration:g} s)")
    print(
        f"  ordinary reviews      p50 {result['ordinary_p50_ms']:7.1f} ms   "
        f"p99 {result['ordinary_p99_ms']:7.1f} ms   ({result['ordinary_answered']} answered; "
        "target p99 <= 250 ms)"
    )
    print(
        f"  server RSS            start {result['rss_start_mb']:5.1f} MB   "
        f"peak {result['rss_peak_mb']:6.1f} MB   (target peak <= 150 MB)"
    )
    print(
        f"  genuine 294 KiB review slowest {result['large_max_ms']:7.1f} ms   "
        f"({result['large_answered']} answered; target <= 2000 ms)"
    )
    if name == "huge":
        print(
            f"  huge reviews answered {result['huge_answered']} (all must be denied), "
            f"refused {result['huge_refused']} (503: body budget full or no slot in time)"
        )
    else:
        line = (
            f"  attack connections    {result['attack_connections']} opened, "
            f"{result['attack_ended_by_server']} ended by the server, longest held "
            f"{result['longest_held_s']:.1f} s"
        )
        if result["deadline_s"] is not None:
            line += f" (deadline {result['deadline_s']:g} s)"
        print(line)
    if name == "header-bomb":
        print(f"  bytes sent per bomb before the cut: median {result['bomb_bytes_median']:,.0f}")
    print(f"  wrong answers {result['wrong']}, errors of honest clients {result['errors']}")
    print("  targets met" if verdict(result) else "  targets NOT met")
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per attack")
    parser.add_argument("--senders", type=int, default=16, help="huge-review senders")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="which attacks")
    args = parser.parse_args()
    chosen = [name for name in args.scenarios.split(",") if name]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {1})
    WORK.mkdir(parents=True, exist_ok=True)
    certs = ensure_dev_certs(WORK / "certs")
    print("abuse benchmark: server on CPU 0, attackers and honest clients on CPU 1")
    print()
    results = []
    for name in chosen:
        result = run(name, args.duration, args.senders, certs.cert.parent, certs.ca_cert)
        print_result(result, args.duration)
        results.append(result)
    print("all targets met" if all(map(verdict, results)) else "targets NOT met")
    (WORK / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
