"""A reflector: keeps an in-memory mirror of one kind of API object current by list + watch.

Decisions need cluster state (namespace labels, binding objects) without calling the API
server on the admission path, so a reflector mirrors what it needs into memory the way
client-go's does. The namespace reflector (``webhook.live.sources.namespaces``) and the
binding reflector (``webhook.live.sources.bindings``) are this one loop with a different
request and a different mirror:

- **List, then watch from the list's resourceVersion**; a watch the server ends at its own
  timeout is renewed from the last resourceVersion seen (BOOKMARKs keep it fresh).
- **Current, or not** (:attr:`Reflector.current`): listed, and a watch established with no
  failure since. A watch that fails, or ends cleanly before its timeout (an apiserver
  shutting down, its watch cache reinitialising), makes it not current and is followed by
  a **relist**: a list is a consistent read, whereas a resumed watch replays what was
  missed only after it is established (``docs/decisions.md``). A 410 Gone, as an HTTP 410
  or an ERROR event, and a watch refused with 404 relist too.
- **A wake-up cuts the backoff short** (:meth:`Reflector.wake`: a review proves the
  apiserver is up), at most once per ``wake_interval`` seconds.
- **Exponential backoff with jitter** on every failure, so that many webhook replicas do not
  hammer a recovering API server in lockstep.
- **Changes take effect at once**: the mirror changes per event and ``on_change`` (called on
  the reflector's thread) lets the refresher rebuild the snapshot without waiting for its
  next tick; the refresher coalesces bursts of calls into one rebuild.
- **A resource that is not served** (:meth:`Reflector._absent`: a list refused with 404 that
  the subclass expects, such as a CRD not installed) empties the mirror, counts as listed,
  and is asked again every ``absent_retry`` seconds.

The official client is synchronous (urllib3), and a watch is a long blocking read, so the
loop runs in a dedicated daemon thread. :meth:`Reflector.stop_sync` interrupts a blocked
read by shutting the socket down, so stopping takes milliseconds rather than a watch
timeout. Responses are parsed as plain JSON rather than client models: only a few fields
matter, and large clusters list thousands of objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import urllib3
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from webhook.clients.backoff import Backoff
from webhook.clients.errors import SourceError, describe_api_error
from webhook.clients.kube import load_api_client
from webhook.clients.kube_paging import Page, pages
from webhook.live.sources.watch_stream import Mirror, lines, resource_version_of

log = logging.getLogger(__name__)

__all__ = ["Mirror", "OnChange", "Reflector"]

OnChange = Callable[[], None]
_GONE = 410
_NOT_FOUND = 404


class _Expired(Exception):
    """The resourceVersion we hold is too old (410): only a relist can recover."""


class _Stopped(Exception):
    """stop() was called while a request was being made."""


class _Absent(Exception):
    """The list was refused the way the subclass expects when the resource is not served."""


class Reflector:
    """Mirrors one kind of object into a :class:`Mirror` through list + watch.

    Subclasses say what to request (:meth:`_request`) and, optionally, which refusal means
    "not served" (:meth:`_absent`). ``what`` names the objects in logs ("namespace").

    Thread model: one daemon thread owns the API connection and is the mirror's only
    writer. ``on_change`` is called on that thread after the first successful list and
    after every change the mirror reports; it must be cheap and thread-safe
    (:meth:`webhook.live.refresher.Refresher.namespaces_changed` is both, and coalesces).

    Timing knobs are parameters so tests can shrink them: ``watch_timeout`` (seconds the API
    server keeps one watch open; keep it below the snapshot staleness bound, since a quiet
    watch refreshes the mirror's sync time only when it is renewed), ``connect_timeout``
    and ``read_timeout`` (per request; a watch's read timeout is ``watch_timeout +
    read_timeout``), ``backoff_initial``/``backoff_max``/``backoff_factor`` and ``jitter``
    (that fraction of each delay random, as in :mod:`webhook.clients.backoff`),
    ``stop_timeout`` (how long :meth:`stop_sync` waits for the thread), ``absent_retry``
    (seconds between lists of a resource that is not served), ``wake_interval`` (the least
    time between two :meth:`wake` calls that count). ``page_size`` pages the list
    (``limit``).
    """

    what = "object"

    def __init__(
        self,
        mirror: Mirror,
        *,
        api_client: k8s_client.ApiClient | None = None,
        on_change: OnChange | None = None,
        page_size: int = 500,
        watch_timeout: int = 300,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        backoff_factor: float = 2.0,
        jitter: float = 0.5,
        stop_timeout: float = 2.0,
        absent_retry: float = 30.0,
        wake_interval: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        self.mirror = mirror
        self._api_client = api_client
        self._on_change = on_change
        self._clock = time.monotonic
        self._page_size = page_size
        self._watch_timeout = watch_timeout
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._backoff = Backoff(backoff_initial, backoff_max, backoff_factor, jitter)
        self._stop_timeout = stop_timeout
        self._absent_retry = absent_retry
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._wakeup = threading.Event()  # set by stop and by wake(): the backoff ends early
        self._wake_interval = wake_interval
        self._last_wake = float("-inf")
        self._caught_up = False  # listed since the last failure: a new watch makes it current
        self._current = False
        self._thread: threading.Thread | None = None
        self._response: urllib3.HTTPResponse | None = None
        self._progress = False  # the current watch has delivered an event or bookmark
        self._resource_version: str | None = None

        #: Full lists made after the first successful one (after a failure, 410 Gone).
        self.relists = 0
        #: Attempts to reopen a watch after the previous one failed or was cut.
        self.reconnects = 0
        #: Failed requests and streams (connection errors, HTTP errors, ERROR events).
        self.errors = 0
        #: Watch events applied (BOOKMARKs excluded).
        self.events = 0
        #: A short description of the most recent failure, for logs and status pages.
        self.last_error: str | None = None
        #: Wake-ups that cut a backoff short (:meth:`wake`), and those refused as too soon.
        self.wakes = 0
        self.wakes_refused = 0
        #: How many times the mirror became current (each catch-up moves it on).
        self.epoch = 0
        #: Why the mirror is not current (None while it is), for readiness and refusals.
        self.not_current_reason: str | None = "not listed yet"

    # ------------------------------------------------------------------ what subclasses say

    def _request(self, api: k8s_client.ApiClient, **kwargs: Any) -> urllib3.HTTPResponse:
        """One list or watch request (``_preload_content=False``) with ``kwargs``."""
        raise NotImplementedError

    def _absent(self, exc: ApiException) -> bool:
        """Whether this refused list means the resource is not served (expected)."""
        return False

    def _recorded_absent(self) -> None:
        """The resource is not served: the subclass records it in its mirror."""

    # ------------------------------------------------------------------ state

    @property
    def resource_version(self) -> str | None:
        """The resourceVersion the next watch resumes from (None: the next step is a list)."""
        return self._resource_version

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def current(self) -> bool:
        """The mirror is exact as of now, up to the watch's own latency: its list succeeded
        and a watch is established with no failure since (see the module docstring).

        A resource that is not served (:meth:`_absent`) is current: that answer came from a
        list too.
        """
        return self._current

    def wake(self) -> bool:
        """Cut the retry delay short: the apiserver is known to be up (a review came).

        Any thread. Does nothing while current, and at most once per ``wake_interval``
        seconds (True when this call counted): a flood of reviews costs one reconnect
        attempt per interval, not one per review.
        """
        if self._current:
            return False
        now = self._clock()
        with self._lock:
            if now - self._last_wake < self._wake_interval:
                self.wakes_refused += 1
                return False
            self._last_wake = now
            self.wakes += 1
        self._wakeup.set()
        return True

    def _set_current(self, reason: str | None) -> None:
        """Current (``reason`` None) or not, and why; logged when it changes."""
        was = self._current
        self.not_current_reason = reason
        if not was and reason is None:
            self.epoch += 1  # before current turns True: whoever sees it sees the new epoch
        self._current = reason is None
        if was and reason is not None:
            log.warning("%s mirror is not current: %s", self.what, reason)
        elif not was and reason is None:
            log.info("%s mirror is current again", self.what)

    def _lost(self, reason: str) -> None:
        """The watch failed or ended early: not current, and the next step is a relist."""
        self._caught_up = False
        self._resource_version = None
        self._set_current(reason)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start watching in a background thread; returns at once.

        Use the mirror's ``has_synced`` or the subclass's ``wait_synced`` to know when it is
        complete. Raises :class:`SourceError` when no API configuration can be loaded.
        """
        self.start_sync()

    async def stop(self) -> None:
        """Stop the thread without blocking the event loop (at most ``stop_timeout``)."""
        await asyncio.to_thread(self.stop_sync)

    def start_sync(self) -> None:
        """Start the thread."""
        if self._thread is not None:
            raise RuntimeError(f"the {self.what} reflector is already started")
        if self._api_client is None:
            self._api_client = load_api_client()
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"spacegate-{self.what.replace(' ', '-')}s", daemon=True
        )
        self._thread.start()

    def stop_sync(self) -> bool:
        """Stop the thread: interrupt any blocked read, wait up to ``stop_timeout``.

        Returns True when the thread has ended. A thread still stuck in a connect attempt
        is left behind (it is a daemon, and exits as soon as that attempt returns).
        """
        thread = self._thread
        if thread is None:
            return True
        self._stopping.set()
        self._wakeup.set()
        with self._lock:
            response = self._response
        if response is not None:
            self._interrupt(response)
        thread.join(self._stop_timeout)
        if thread.is_alive():
            log.warning("%s watcher did not stop within %.1fs", self.what, self._stop_timeout)
            return False
        self._thread = None
        return True

    @staticmethod
    def _interrupt(response: urllib3.HTTPResponse) -> None:
        # shutdown() wakes a read blocked in recv() from another thread; close() alone does
        # not, and can deadlock on TLS sockets (see kubernetes.watch.Watch.stop).
        with contextlib.suppress(Exception):
            response.shutdown()

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        failures = 0  # consecutive failures: the exponent of the backoff
        expiries = 0  # consecutive 410s without progress in between
        while not self._stopping.is_set():
            self._progress = False
            try:
                if self._resource_version is None:
                    self._list()
                    failures = 0
                if self._watch(self._resource_version or ""):
                    failures = expiries = 0
                    continue
                # A clean end before the server's timeout: an apiserver shutting down, or
                # its watch cache reinitialising. What happened since may never be replayed
                # to us: relist (at once when the watch had been working; after a backoff
                # otherwise, or a misbehaving server would spin us).
                self._lost("the watch ended before its timeout")
                if self._progress:
                    failures = expiries = 0
                    continue
                failures += 1
                self._note_failure("watch ended early without events")
            except _Stopped:
                break
            except _Absent:
                failures = expiries = 0
                self._caught_up = False
                self._set_current(None)  # "not served" is a list's answer too
                if self._stopping.wait(self._absent_retry):
                    break
                continue
            except _Expired as exc:
                if self._stopping.is_set():
                    break
                log.info("%s watch expired (%s); relisting", self.what, exc)
                self._lost(f"relisting after 410 Gone ({exc})")
                expiries = 0 if self._progress else expiries + 1
                if expiries <= 1:
                    continue  # the normal case: relist at once
                failures += 1  # 410 right after a fresh list: do not spin
                self._note_failure(f"expired again right after a list: {exc}")
            except Exception as exc:
                if self._stopping.is_set():
                    break
                # A watch that delivered events before failing was healthy for a while:
                # reconnect at the shortest delay.
                failures = 1 if self._progress else failures + 1
                self._note_failure(describe_api_error(exc))
                self._lost(f"the {self.what} watch failed: {self.last_error}")
            delay = self._backoff.delay(failures - 1, self._rng)
            log.debug("%s source retrying in %.2fs", self.what, delay)
            self._wakeup.wait(delay)  # a wake() (a review came) or stop() ends it early
            self._wakeup.clear()
            if self._stopping.is_set():
                break
            if self.mirror.has_synced:
                self.reconnects += 1
        with self._lock:
            self._response = None

    def _note_failure(self, description: str) -> None:
        self.errors += 1
        self.last_error = description
        log.warning(
            "%s %s failed: %s",
            self.what,
            "watch" if self._caught_up else "list",
            description,
        )

    def _open(self, **kwargs: Any) -> urllib3.HTTPResponse:
        """Make a list or watch request and register its response for interruption."""
        if self._stopping.is_set():
            raise _Stopped
        assert self._api_client is not None
        watching = bool(kwargs.get("watch"))
        try:
            response = self._request(self._api_client, **kwargs)
        except ApiException as exc:
            if exc.status == _GONE or (watching and exc.status == _NOT_FOUND):
                raise _Expired(describe_api_error(exc)) from None
            if not watching and self._absent(exc):
                self._resource_version = None
                self._recorded_absent()
                self.last_error = describe_api_error(exc)
                self._notify()
                raise _Absent from None
            raise
        with self._lock:
            self._response = response
            if self._stopping.is_set():
                response.close()
                raise _Stopped
        return response

    def _release(self, response: urllib3.HTTPResponse, *, reusable: bool = False) -> None:
        """Forget the response; keep its connection only when the body was read whole."""
        with self._lock:
            self._response = None
        if reusable:
            response.release_conn()
        else:
            response.close()

    def _page(self, token: str | None) -> Page:
        """One page of the list (its response registered for interruption)."""
        kwargs: dict[str, Any] = {"limit": self._page_size}
        if token:
            kwargs["_continue"] = token
        response = self._open(
            _request_timeout=(self._connect_timeout, self._read_timeout), **kwargs
        )
        try:
            data = response.data
        except BaseException:
            self._release(response)
            raise
        self._release(response, reusable=True)
        page = json.loads(data)
        if not isinstance(page, dict):
            raise ValueError(f"the {self.what} list is not a JSON object")
        return cast(Page, page)

    def _list(self) -> None:
        """List every object (paged) and replace the mirror with the result."""
        items: list[dict[str, Any]] = []
        resource_version: str | None = None
        for page in pages(self._page):
            items.extend(item for item in page.get("items") or [] if isinstance(item, dict))
            meta = page.get("metadata") or {}
            resource_version = meta.get("resourceVersion") or resource_version
        if not resource_version:
            raise ValueError(f"the {self.what} list carries no resourceVersion")
        first = not self.mirror.has_synced
        if not first:
            self.relists += 1
        changed = self.mirror.replace_items(items)
        self._resource_version = resource_version
        self._caught_up = True
        log.info("listed %d %ss at resourceVersion %s", len(items), self.what, resource_version)
        if changed or first:
            self._notify()

    def _watch(self, resource_version: str) -> bool:
        """Follow one watch stream; True when it ended at the server's timeout.

        A stream ends cleanly at ``timeoutSeconds`` from its start; one that ends cleanly
        well before (a second's grace, a tenth on short timeouts) was ended by the server
        for another reason, and False says so.
        """
        started = self._clock()
        response = self._open(
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=self._watch_timeout,
            _request_timeout=(self._connect_timeout, self._watch_timeout + self._read_timeout),
        )
        self.mirror.touch()
        if self._caught_up:
            self._set_current(None)
        try:
            for line in lines(response):
                if self._stopping.is_set():
                    raise _Stopped
                self._handle(json.loads(line))
        finally:
            self._release(response)
        if self._stopping.is_set():
            raise _Stopped
        self.mirror.touch()
        timeout = self._watch_timeout
        return self._clock() - started >= max(timeout * 0.9, timeout - 1.0)

    def _handle(self, event: Any) -> None:
        kind = event.get("type") if isinstance(event, dict) else None
        obj = event.get("object") if isinstance(event, dict) else None
        if kind == "ERROR":
            code = obj.get("code") if isinstance(obj, dict) else None
            message = obj.get("message", "") if isinstance(obj, dict) else ""
            if code == _GONE:
                raise _Expired(message)
            raise SourceError(f"watch ERROR event {code}: {message}")
        if kind not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
            raise SourceError(f"unexpected watch event type {kind!r}")
        self._progress = True
        if kind == "BOOKMARK":
            self._resource_version = resource_version_of(obj) or self._resource_version
            self.mirror.touch()
            return
        if not isinstance(obj, dict):
            raise SourceError(f"a {kind} event without an object")
        changed = self.mirror.apply_event(kind, obj)
        self.events += 1
        self._resource_version = resource_version_of(obj) or self._resource_version
        self.mirror.touch()
        if changed:
            self._notify()

    # ------------------------------------------------------------------ callbacks

    def _notify(self) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change()
        except Exception:
            log.exception("%s on_change callback failed", self.what)
