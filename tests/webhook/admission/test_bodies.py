"""Request bodies: idle senders hold no decode slot, waits are bounded, memory is shared.

The attack the issue found: requests without a Content-Length (chunked) that send nothing
counted as large and each held one of the two large-review slots with no deadline, so a
genuine 294 KiB review waited behind six of them for over 22 s, past any webhook timeout.
Now a body is read (capped, within its deadline) before it takes a slot, waiting for a slot
ends at the request's deadline, and what stalled bodies hold together is bounded
(``webhook.admission.bodies``).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from policy.snapshot import Snapshot
from webhook.admission.endpoint import AdmissionEndpoint
from webhook.state import StaticState

from ..conftest import RunningServer, fixed_state, pod, review, run_server
from .replies import JSON_HEADERS
from .wire import Wire, chunk, chunked_head, post

DENIED = "harbor.demo.local/team-b/api:1.0"


def large_review(uid: str, size: int = 294 * 1024) -> bytes:
    """A genuine review whose body is over the large-body threshold (256 KiB)."""
    obj = pod(DENIED)
    obj["metadata"]["annotations"] = {"notes": "n" * size}
    return json.dumps(review(obj, uid=uid, namespace="sandbox")).encode()


def timed_post(server: RunningServer, body: bytes, timeout: float = 5) -> tuple[float, Any]:
    with httpx.Client(
        base_url=server.url, verify=server.tls_dir.client_context(), timeout=timeout
    ) as client:
        started = time.monotonic()
        http = client.post("/validate", content=body, headers=JSON_HEADERS)
        return time.monotonic() - started, http


def test_idle_chunked_requests_do_not_delay_a_genuine_large_review(
    shared_server: RunningServer,
) -> None:
    idle = [Wire(shared_server) for _ in range(6)]
    try:
        for wire in idle:
            wire.send(chunked_head())  # ... and then nothing
        time.sleep(0.2)

        waited, http = timed_post(shared_server, large_review("genuine-large"))
    finally:
        for wire in idle:
            wire.close()

    assert http.json()["response"]["uid"] == "genuine-large"
    assert http.json()["response"]["allowed"] is False
    assert waited < 2


def test_trickling_chunked_bodies_do_not_delay_a_genuine_large_review(
    shared_server: RunningServer,
) -> None:
    stop = threading.Event()
    senders = [Wire(shared_server) for _ in range(6)]

    def trickle(wire: Wire) -> None:
        wire.send(chunked_head() + chunk(b'{"apiVersion":'))
        while not stop.is_set():
            try:
                wire.send(chunk(b" "))
            except OSError:
                return
            time.sleep(0.05)

    threads = [threading.Thread(target=trickle, args=(w,), daemon=True) for w in senders]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.2)
        waited, http = timed_post(shared_server, large_review("beside-tricklers"))
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        for wire in senders:
            wire.close()

    assert http.json()["response"]["uid"] == "beside-tricklers"
    assert waited < 2


@pytest.fixture
def slow_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large reviews take a second to decide (in their worker thread)."""
    answer = AdmissionEndpoint._answer

    def slowly(self: AdmissionEndpoint, body: bytes, snapshot: Snapshot) -> Any:
        if len(body) > 256 * 1024:
            time.sleep(1.0)
        return answer(self, body, snapshot)

    monkeypatch.setattr(AdmissionEndpoint, "_answer", slowly)


@pytest.fixture
def quick(demo_snapshot: Snapshot, shared_server: RunningServer) -> Iterator[RunningServer]:
    """A server whose requests have 0.3 s to send their body and get a decode slot."""
    state = StaticState(demo_snapshot)
    settings = dataclasses.replace(fixed_state(state), body_timeout=0.3)
    with run_server(settings, shared_server.tls_dir, state) as running:
        yield running


@pytest.mark.usefixtures("slow_decoding")
def test_a_large_review_waits_for_a_decode_slot_no_longer_than_its_deadline(
    quick: RunningServer,
) -> None:
    results: list[tuple[float, Any]] = []
    occupy = [
        threading.Thread(
            target=lambda n=n: results.append(timed_post(quick, large_review(f"slot-{n}")))
        )
        for n in range(2)
    ]
    for thread in occupy:
        thread.start()
    time.sleep(0.2)  # both slots taken for a second

    waited, third = timed_post(quick, large_review("third"))
    for thread in occupy:
        thread.join(10)

    assert third.status_code == 503
    assert "no slot to decode this large review within 0.3 s" in third.json()["message"]
    assert waited < 1.0
    assert sorted(http.json()["response"]["uid"] for _, http in results) == ["slot-0", "slot-1"]


def test_stalled_bodies_past_the_memory_budget_are_cut_oldest_first(
    demo_snapshot: Snapshot, shared_server: RunningServer
) -> None:
    state = StaticState(demo_snapshot)
    settings = dataclasses.replace(fixed_state(state), body_budget_bytes=1024 * 1024)
    head = (
        b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 800000\r\n\r\n"
    )
    with run_server(settings, shared_server.tls_dir, state) as budgeted:
        stalled = [Wire(budgeted) for _ in range(3)]
        try:
            for wire in stalled:
                wire.send(head + b"{" + b" " * 399_999)  # half a body, then nothing
                time.sleep(0.2)

            oldest = stalled[0].response()
            others_answered = [not wire.ended(0.2) and wire.buffer for wire in stalled[1:]]
            with budgeted.client() as client:
                ordinary = client.post(
                    "/validate", content=json.dumps(review(pod(DENIED))), headers=JSON_HEADERS
                )
        finally:
            for wire in stalled:
                wire.close()

    assert oldest.status == 503
    assert b"bytes of unfinished request bodies" in oldest.body
    assert others_answered == [b"", b""]  # the two younger ones still wait for their bodies
    assert ordinary.json()["response"]["allowed"] is False


def test_a_large_review_is_decided_while_ordinary_ones_keep_flowing(
    shared_server: RunningServer,
) -> None:
    with (
        Wire(shared_server) as wire,
        httpx.Client(
            base_url=shared_server.url, verify=shared_server.tls_dir.client_context()
        ) as client,
    ):
        wire.send(post("/validate", large_review("large-beside", size=3 * 1024 * 1024)))
        ordinary = client.post(
            "/validate", content=json.dumps(review(pod(DENIED))), headers=JSON_HEADERS
        )
        large = wire.response()

    assert ordinary.json()["response"]["allowed"] is False
    assert large.json()["response"]["uid"] == "large-beside"
