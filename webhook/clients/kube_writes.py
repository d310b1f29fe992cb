"""Many apiserver writes at once, within a bound, backing off when the apiserver says so.

The leader's first passes write thousands of objects (a pull Secret per namespace, a
PolicyReport per workload). One at a time, each waits a round trip; all at once, they would
take seats the apiserver's priority and fairness shares among every client of the cluster
and come back as 429s. So they go through a :class:`WritePool`: a fixed number of worker
threads (:data:`DEFAULT_WORKERS`, a small fraction of the seats a priority level gets with
the apiserver's default ``--max-requests-inflight`` 400 and ``--max-mutating-requests-inflight``
200: ``workload-low``, where ServiceAccounts land, has about 245 of those 600 on this
cluster's defaults), each write retried after a 429 once the ``Retry-After`` the apiserver
sent has passed (:class:`Throttle`, at most :data:`MAX_THROTTLED_ATTEMPTS` times), every 429
counted (``spacegate_apiserver_throttled_total``). Nothing else is retried here: a 409 is a
lost race the caller decides about.

:func:`send` is the write itself as raw JSON through an ``ApiClient``'s connection and
credentials (no client models built or parsed: those cost more CPU than the request); a
refusal is the ``ApiException`` the official client would raise, status, body and headers
included. Calls block; pools run them in their threads.
"""

from __future__ import annotations

import asyncio
import functools
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter

from webhook.clients.backoff import Backoff

__all__ = [
    "DEFAULT_WORKERS",
    "MAX_THROTTLED_ATTEMPTS",
    "TOO_MANY_REQUESTS",
    "Throttle",
    "ThrottleMetrics",
    "WritePool",
    "retry_after",
    "send",
]

T = TypeVar("T")

# Writes in flight at once per pool (module doc).
DEFAULT_WORKERS: Final = 8
# A write refused with 429 is tried at most this many times in all.
MAX_THROTTLED_ATTEMPTS: Final = 8
# The longest wait a Retry-After may impose before a retry (seconds).
MAX_RETRY_AFTER: Final = 30.0
# The apiserver's "slow down" (priority and fairness, or max-requests-inflight): writers let
# it through to the throttle rather than counting the write as failed.
TOO_MANY_REQUESTS: Final = 429


def send(
    api: client.ApiClient,
    method: str,
    path: str,
    body: Mapping[str, Any] | None = None,
    *,
    query: Sequence[tuple[str, Any]] = (),
    timeout: float | None = None,
) -> bytes:
    """``method path`` with ``body`` as JSON; the response body, unparsed. Any status but
    2xx raises the ``ApiException`` the official client would (status, reason, body,
    headers)."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    method_, url, headers_, _, post = api.param_serialize(
        method,
        path,
        query_params=list(query),
        header_params=headers,
        auth_settings=["BearerToken"],
    )
    options: dict[str, Any] = {} if timeout is None else {"_request_timeout": timeout}
    payload = None if body is None else dict(body)
    response = api.call_api(method_, url, headers_, payload, post, **options)
    data: bytes = response.read()  # type: ignore[no-untyped-call]
    if not 200 <= int(response.status) <= 299:
        error = ApiException(status=int(response.status), reason=response.reason)
        error.body = data.decode("utf-8", "replace")
        error.headers = response.headers
        raise error
    return data


def retry_after(exc: ApiException) -> float | None:
    """The seconds a 429's ``Retry-After`` asks for (the apiserver sends whole seconds)."""
    headers = exc.headers or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


class ThrottleMetrics:
    """``spacegate_apiserver_throttled_total{job}``: writes the apiserver refused with 429."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.throttled = Counter(
            "spacegate_apiserver_throttled_total",
            "Writes the apiserver answered with 429 Too Many Requests (each was retried "
            "after its Retry-After), by the leader's job that made them.",
            ["job"],
            registry=registry,
        )


class Throttle:
    """Calls a write, retrying it after each 429 once its ``Retry-After`` has passed
    (exponential backoff with jitter when there is none); counts the 429s."""

    def __init__(
        self,
        *,
        job: str = "",
        attempts: int = MAX_THROTTLED_ATTEMPTS,
        longest: float = MAX_RETRY_AFTER,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.job = job
        self._attempts = attempts
        self._longest = longest
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._backoff = Backoff(0.5, longest)
        self._lock = threading.Lock()
        self.throttled = 0
        self.metrics: ThrottleMetrics | None = None

    def call(self, write: Callable[[], T]) -> T:
        """``write()``, again after each 429 (at most ``attempts`` calls in all)."""
        attempt = 0
        while True:
            try:
                return write()
            except ApiException as exc:
                attempt += 1
                if exc.status != TOO_MANY_REQUESTS or attempt >= self._attempts:
                    raise
                wait = retry_after(exc)
                if wait is None:
                    with self._lock:
                        wait = self._backoff.delay(attempt - 1, self._rng)
                with self._lock:
                    self.throttled += 1
                if self.metrics is not None:
                    self.metrics.throttled.labels(self.job).inc()
                self._sleep(min(wait, self._longest))


class WritePool:
    """``workers`` threads that run blocking writes through a :class:`Throttle`.

    :meth:`gather` is for asyncio callers (the provisioning pass on ``serve``'s event loop),
    :meth:`map` for threads (the audit's child process). Both keep at most ``workers``
    writes in flight and return each write's result or the exception it raised, in order.
    """

    def __init__(self, workers: int = DEFAULT_WORKERS, throttle: Throttle | None = None) -> None:
        if workers < 1:
            raise ValueError("a write pool needs at least one worker")
        self.workers = workers
        self.throttle = throttle or Throttle()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="spacegate-write")

    def close(self) -> None:
        """Stop the threads once the writes in flight are done."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> WritePool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    async def gather(self, writes: Iterable[Callable[[], T]]) -> list[T | BaseException]:
        """Run every write on the pool; their results (or exceptions), in order."""
        loop = asyncio.get_running_loop()
        futures: list[Awaitable[T]] = [
            loop.run_in_executor(self._executor, functools.partial(self.throttle.call, write))
            for write in writes
        ]
        try:
            return list(await asyncio.gather(*futures, return_exceptions=True))
        except asyncio.CancelledError:
            for future in futures:
                if isinstance(future, asyncio.Future):
                    future.cancel()  # writes not started yet never start
            raise

    def map(self, writes: Iterable[Callable[[], T]]) -> list[T | BaseException]:
        """The same for a thread: at most ``2 * workers`` writes queued ahead, so an
        unbounded iterable (reports built as findings arrive) costs bounded memory."""
        results: list[T | BaseException] = []
        pending: list[Any] = []
        window = 2 * self.workers

        def drain(keep: int) -> None:
            while len(pending) > keep:
                future = pending.pop(0)
                try:
                    results.append(future.result())
                except Exception as exc:
                    results.append(exc)

        for write in writes:
            pending.append(self._executor.submit(self.throttle.call, write))
            drain(window)
        drain(0)
        return results
