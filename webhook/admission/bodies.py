"""Reading a review's body: its size cap, its deadline, the memory all bodies may hold
together, and the few slots that decode large ones.

Every request an admission endpoint takes has one deadline, set when its head is in:
``body_timeout`` seconds (:data:`BODY_TIMEOUT_SECONDS`) to send its body and, for a large
one, to get a decode slot. The body is read first, its size capped as it arrives
(:data:`~webhook.admission.review.MAX_BODY_BYTES`), and only a body found larger than
:data:`LARGE_BODY_BYTES` then waits for one of :data:`LARGE_BODY_CONCURRENCY` slots to be
decoded and decided in a worker thread. So a client that sends a head and then nothing,
or trickles its body, holds no slot: a genuine large review never queues behind it (the
apiserver always sends a Content-Length and its whole body at once).

Reading first means bodies wait in memory rather than in socket buffers, so what all
unfinished or queued bodies hold together is bounded too (:data:`BODY_BUDGET_BYTES`,
counted as the bytes arrive; the bodies being decided are bounded by the slots). Past it
the request that has been waiting longest is refused with 503: a genuine body arrives in
milliseconds, so the oldest is the one stalling on purpose (or the one queued longest for
a decode slot). A client that stalls holds only what it sent.

One sweeper task (owned by the app's lifespan) applies every deadline: registering a
request in a dict costs next to nothing where ``asyncio.timeout`` would cost a timer per
review. A request cut by the sweeper or the budget is cancelled, and the endpoint turns
that cancellation into its answer (:meth:`RequestBodies.refusal`).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Final

from starlette.types import Receive

from webhook.admission.review import API_VERSIONS, V1, MalformedReview

__all__ = [
    "BODY_BUDGET_BYTES",
    "BODY_TIMEOUT_SECONDS",
    "LARGE_BODY_BYTES",
    "LARGE_BODY_CONCURRENCY",
    "UID_PREFIX_BYTES",
    "Disconnected",
    "LargeBodies",
    "PendingRequest",
    "RequestBodies",
    "read_body",
]

# The apiserver sends a review in one go and gives up after the webhook's timeoutSeconds
# (10 s by default, 30 s at most). A body still incomplete after 10 s comes from a broken
# or hostile client; answering 408 frees the connection instead of waiting forever
# (uvicorn itself has no body-read timeout).
BODY_TIMEOUT_SECONDS: Final = 10.0

# Bodies above this size are decoded and decided off the event loop, by at most
# LARGE_BODY_CONCURRENCY threads at once. Ordinary reviews are a few kilobytes.
LARGE_BODY_BYTES: Final = 256 * 1024
LARGE_BODY_CONCURRENCY: Final = 2
# How much of an oversized body is read to find its uid (the apiserver writes it first).
UID_PREFIX_BYTES: Final = 16 * 1024
# What the bodies of requests not yet being decided (being read, or queued for a decode
# slot) may hold together: more than two reviews of the largest size the apiserver can send
# (about 6 MiB, docs/limits.md). Bodies being decided are bounded by the slots instead.
BODY_BUDGET_BYTES: Final = 16 * 1024 * 1024


class Disconnected(Exception):
    """The client went away before sending the whole body: nobody to answer."""


class PendingRequest:
    """One request between its head and its decision: deadline, bytes held, and why it
    was cut short (None while it was not)."""

    __slots__ = ("deadline", "ended_by", "held", "task")

    def __init__(self, task: asyncio.Task[Any], deadline: float) -> None:
        self.task = task
        self.deadline = deadline
        self.held = 0
        self.ended_by: str | None = None  # "deadline" or "budget"


class RequestBodies:
    """The requests whose bodies are being read or queued: their deadlines and memory.

    The loop is remembered when the sweeper starts: ``asyncio.current_task()`` and
    ``asyncio.get_running_loop()`` without it look the running loop up and, on Python
    3.11, make a ``getpid`` system call each time, twice per review for nothing.
    """

    def __init__(self, timeout: float, budget: int = BODY_BUDGET_BYTES) -> None:
        self.timeout = timeout
        self.budget = budget
        # requests that may still be cut short, in order of arrival (= of deadline)
        self.waiting: dict[asyncio.Task[Any], PendingRequest] = {}
        self.held = 0  # body bytes of the requests in ``waiting``
        self.loop: asyncio.AbstractEventLoop | None = None

    def begin(self) -> PendingRequest:
        """Register the current task's request, its deadline from now."""
        loop = self.loop or asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None
        request = PendingRequest(task, loop.time() + self.timeout)
        self.waiting[task] = request
        return request

    def hold(self, request: PendingRequest, size: int) -> None:
        """``size`` more bytes of ``request``'s body are in memory. Over the budget, the
        oldest waiting requests are cut until it fits again (this one too, if it is the
        oldest: then :class:`MalformedReview` is raised here)."""
        request.held += size
        self.held += size
        while self.held > self.budget and self.waiting:
            victim = next(iter(self.waiting.values()))
            self._cut(victim, "budget")
            if victim is request:
                raise self._refusal(request, queued=False)
            victim.task.cancel()

    def settle(self, request: PendingRequest) -> None:
        """The request is being decided: no deadline or budget cuts it any more, and its
        body leaves the budget (the decode slots bound those bodies)."""
        if self.waiting.pop(request.task, None) is not None:
            self.held -= request.held
            request.held = 0

    def end(self, request: PendingRequest) -> None:
        """The request is answered (or abandoned): forget it and what it held."""
        self.settle(request)

    def _cut(self, request: PendingRequest, why: str) -> None:
        request.ended_by = why
        del self.waiting[request.task]
        self.held -= request.held
        request.held = 0

    def refusal(self, request: PendingRequest, *, queued: bool) -> MalformedReview:
        """The answer for a request this registry cancelled (``ended_by`` is set; any other
        cancellation, a shutdown, is the caller's to re-raise)."""
        request.task.uncancel()
        return self._refusal(request, queued=queued)

    def _refusal(self, request: PendingRequest, *, queued: bool) -> MalformedReview:
        if request.ended_by == "budget":
            return MalformedReview(
                f"spacegate is holding {self.budget} bytes of unfinished request bodies, "
                "its limit (see docs/limits.md); this request, the one waiting longest, "
                "was not checked",
                code=503,
            )
        if queued:
            return MalformedReview(
                f"no slot to decode this large review within {self.timeout:g} s (other "
                "large reviews were being decided); it was not checked",
                code=503,
            )
        return MalformedReview(f"request body not received within {self.timeout:g} s", code=408)

    async def sweep(self) -> None:
        """Cut requests past their deadline, checking a few times per timeout."""
        loop = self.loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(min(1.0, self.timeout / 4))
                now = loop.time()
                while self.waiting:
                    request = next(iter(self.waiting.values()))
                    if request.deadline > now:
                        break
                    self._cut(request, "deadline")
                    request.task.cancel()
        finally:
            self.loop = None  # an app served again later runs on another loop


class LargeBodies:
    """Reviews over :data:`LARGE_BODY_BYTES`: decided a few at a time, off the loop.

    Decoding and deciding run in a worker thread, so the event loop keeps answering
    ordinary reviews while a multi-megabyte one is parsed. A body waits for a slot only
    once it is complete, and no longer than its request's deadline.
    """

    def __init__(self, threshold: int, concurrency: int = LARGE_BODY_CONCURRENCY) -> None:
        self.threshold = threshold
        self.concurrency = concurrency
        self._permits: asyncio.Semaphore | None = None

    def start(self) -> None:
        """Fresh permits for a serving loop (the lifespan calls this at start-up)."""
        self._permits = asyncio.Semaphore(self.concurrency)

    async def slot(self, bodies: RequestBodies, request: PendingRequest) -> asyncio.Semaphore:
        """Wait for a decode slot (503 past the request's deadline); the caller releases
        the semaphore returned."""
        if self._permits is None:  # served without a lifespan (some tests)
            self.start()
        assert self._permits is not None
        try:
            await self._permits.acquire()
        except asyncio.CancelledError:
            if request.ended_by is None:
                raise
            raise bodies.refusal(request, queued=True) from None
        bodies.settle(request)
        return self._permits


_PREFIX_UID: Final = re.compile(rb'"request"\s*:\s*\{\s*"uid"\s*:\s*"([!#-\[\]-~]{1,128})"')
_PREFIX_API_VERSION: Final = re.compile(rb'"apiVersion"\s*:\s*"(admission\.k8s\.io/v1(?:beta1)?)"')


def _too_large(limit: int, size: int | None, prefix: bytes) -> MalformedReview:
    """The refusal of a body over the limit, answerable as a review if its uid is in front.

    The apiserver serializes ``kind``, ``apiVersion`` and then ``request`` with ``uid`` as its
    first field, so the first bytes of a genuine review name its uid; a denial (``/validate``)
    or an unpatched admission (``/mutate``) can then be sent instead of a bare 413, which
    would hand the verdict to ``failurePolicy``.
    """
    what = f"{size} bytes" if size is not None else "more bytes"
    message = (
        f"the AdmissionReview has {what}, over spacegate's limit of {limit} bytes for one "
        "review (see docs/limits.md); it was not checked"
    )
    uid = _PREFIX_UID.search(prefix)
    if uid is None:
        return MalformedReview(message, code=413)
    version = _PREFIX_API_VERSION.search(prefix, 0, uid.start())
    api_version = version.group(1).decode("ascii") if version is not None else V1
    if api_version not in API_VERSIONS:  # pragma: no cover - the pattern allows only these
        api_version = V1
    return MalformedReview(
        message, code=413, uid=uid.group(1).decode("ascii"), api_version=api_version
    )


async def read_body(
    receive: Receive,
    declared: bytes | None,
    limit: int,
    bodies: RequestBodies,
    request: PendingRequest,
) -> bytes:
    """The body, refused as soon as it is known to exceed ``limit`` bytes.

    A declared Content-Length over the limit is refused after reading only its first
    :data:`UID_PREFIX_BYTES` (to find the uid); a chunked body is counted as it streams in,
    and reading stops at the first chunk over the limit (the server discards whatever the
    client still sends). Every byte kept is held against the budget of ``bodies``. A body
    not complete by the request's deadline is refused with 408, and that includes a client
    that sends its headers and then nothing.
    """
    size_declared: int | None = None
    if declared is not None:
        if not declared.isdigit():
            raise MalformedReview(f"invalid Content-Length {declared[:40].decode('latin-1')!r}")
        size_declared = int(declared)
    over = size_declared is not None and size_declared > limit
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Disconnected
            chunk: bytes = message.get("body", b"")
            more = message.get("more_body", False)
            if chunk:
                size += len(chunk)
                if size <= limit or size - len(chunk) < UID_PREFIX_BYTES:
                    chunks.append(chunk)
                    bodies.hold(request, len(chunk))
                if size > limit or (over and (size >= UID_PREFIX_BYTES or not more)):
                    prefix = b"".join(chunks)[:UID_PREFIX_BYTES]
                    raise _too_large(limit, size_declared, prefix)
            if not more:
                break
    except asyncio.CancelledError:
        if request.ended_by is None:
            raise
        raise bodies.refusal(request, queued=False) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
