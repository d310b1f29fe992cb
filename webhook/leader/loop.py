"""The one loop of the leader's work: when each job's pass starts, and when work stops.

The leader has jobs (``webhook.leader.jobs``: pull-secret provisioning, the background
audit), each a full, level-triggered pass over the cluster. A pass costs seconds to
minutes, so it starts only when it can matter:

- **when leadership is gained** (every job: a new leader does not know what the last one
  finished);
- **when something the job depends on changed**: each job says what of a snapshot it reads
  (its *view*: provisioning's desired state, the inputs of the audit's decisions) and which
  differences count. A snapshot is a new version whenever a registry is listed again or a
  namespace comes or goes; most versions change nothing a job reads, and start nothing;
- **on the job's interval** otherwise (``audit.interval``; provisioning every 5 minutes, so
  a Secret deleted by hand comes back);
- **sooner after a pass that failed or was incomplete** (it raised, or raised
  :class:`IncompletePass`: a Harbor 5xx, a write refused): again after
  :data:`RETRY_INITIAL` seconds, doubling while it keeps failing, never later than the
  interval, so what an outage left undone is done soon after it ends.

Changes are coalesced: the loop looks at the snapshot at most once per ``settle`` seconds
after a change (a burst of namespace events is one look), computes views in a worker thread
(desired states are CPU work proportional to the cluster) and runs at most one pass of each
job at a time; a change during a pass starts one more pass after it. Jobs run side by side,
so a long audit never delays a Secret.

Nothing polls: the loop sleeps until the Lease changes hands (``LeaseElector.wait_changed``),
a new snapshot is announced (:class:`webhook.state.SnapshotFeed`), a pass ends, a job is
due, or the leadership would lapse without a renewal. When the leadership is lost the
running passes are cancelled at once (an audit's child process is killed; a write already
sent completes, nothing after it starts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Gauge

from policy.snapshot import Snapshot
from webhook.leader.lease import LostLeadership
from webhook.state import SnapshotFeed

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_SETTLE", "RETRY_INITIAL", "IncompletePass", "Job", "LeaderLoop", "Leadership"]

# Seconds the loop waits after a snapshot change before looking: a burst is one look.
DEFAULT_SETTLE = 1.0
# The shortest sleep: a clock at the edge of a deadline never makes the loop spin.
_MIN_SLEEP = 0.005
# Seconds before a failed pass is tried again (doubling while it keeps failing).
RETRY_INITIAL = 5.0


class IncompletePass(Exception):
    """A pass ran to its end but left something undone (counted failures): the loop tries
    again soon rather than on the job's interval."""


class Leadership(Protocol):
    """Where this replica stands (``webhook.leader.lease.LeaseElector``)."""

    @property
    def is_leader(self) -> bool: ...

    def lapses_in(self) -> float: ...

    async def wait_changed(self) -> None: ...


class Job(Protocol):
    """One kind of leader work, as the loop needs to know it."""

    name: str

    def wanted(self, snapshot: Snapshot) -> bool:
        """Whether the job is switched on in this snapshot's config."""
        ...

    def interval(self, snapshot: Snapshot) -> float:
        """Seconds between passes when nothing relevant changes."""
        ...

    def view(self, snapshot: Snapshot) -> object:
        """What of the snapshot the job reads (run in a worker thread)."""
        ...

    def changed(self, before: object, after: object) -> bool:
        """Whether going from view ``before`` to view ``after`` calls for a pass."""
        ...

    def revision(self) -> int:
        """A number that moves when something the view reads besides the snapshot changed
        (another job's finished pass): the loop then computes the view again."""
        ...

    async def run(self, snapshot: Snapshot, view: object) -> None:
        """One pass (may raise; the loop logs it)."""
        ...


@dataclass(eq=False)
class _JobState:
    job: Job
    task: asyncio.Task[bool] | None = None
    started: float | None = None  # clock time of the last pass since leading; None: none yet
    # (snapshot version, job revision) ``view`` was computed from
    version: tuple[int, int] | None = None
    view: object = None
    dirty: bool = False  # a relevant change since the last pass started
    failures: int = 0  # consecutive passes that failed or were incomplete
    retry_at: float | None = None  # clock time a failed pass is due again

    def forget(self) -> None:
        """Leadership lost: the next leadership starts from scratch."""
        self.task = None
        self.started = None
        self.version = None
        self.view = None
        self.dirty = False
        self.failures = 0
        self.retry_at = None


class LeaderLoop:
    """Runs ``jobs`` while ``leadership`` says this replica leads, reading ``feed``.

    ``settle``: seconds between a snapshot change and the look at it; ``clock``: monotonic
    seconds (tests inject one); ``registry``: where the ``spacegate_leader`` gauge goes.
    """

    def __init__(
        self,
        leadership: Leadership,
        feed: SnapshotFeed,
        jobs: Sequence[Job],
        *,
        settle: float = DEFAULT_SETTLE,
        clock: Callable[[], float] = time.monotonic,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._leadership = leadership
        self._feed = feed
        self._states = [_JobState(job) for job in jobs]
        self._settle = settle
        self._clock = clock
        self._gauge = (
            None
            if registry is None
            else Gauge(
                "spacegate_leader",
                "1 while this replica holds the leader Lease.",
                registry=registry,
            )
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._retry_initial = RETRY_INITIAL
        self._changed_at: float | None = None  # first snapshot change not looked at yet

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Run until cancelled; running passes are cancelled with it."""
        self._loop = asyncio.get_running_loop()
        remove = self._feed.add_listener(self._snapshot_changed)
        try:
            while True:
                await self._turn()
        finally:
            remove()
            await self._stop_passes()

    def _snapshot_changed(self) -> None:
        """A new snapshot (the feed's listener; any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._mark_changed()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._mark_changed)

    def _mark_changed(self) -> None:
        if self._changed_at is None:
            self._changed_at = self._clock()
        self._wake.set()

    async def _turn(self) -> None:
        if not self._leadership.is_leader:
            self._set_gauge(0)
            if any(s.started is not None or s.task is not None for s in self._states):
                log.info("leader: leadership lost; stopping the leader's work")
                await self._stop_passes()
            await self._leadership.wait_changed()
            return
        self._set_gauge(1)
        now = self._clock()
        settled = self._changed_at is None or now - self._changed_at >= self._settle
        if settled:
            self._changed_at = None
        snapshot = self._feed.snapshot
        for state in self._states:
            if state.task is not None and state.task.done():
                self._finished(state, state.task, now, snapshot)
                state.task = None
            job = state.job
            if not job.wanted(snapshot):
                continue
            due = (
                state.started is None
                or now - state.started >= job.interval(snapshot)
                or (state.retry_at is not None and now >= state.retry_at)
            )
            key = (snapshot.version, job.revision())
            if (due and state.task is None) or (settled and state.version != key):
                await self._look(state, snapshot, key)
                if not self._leadership.is_leader:
                    return  # lost while looking: the next turn stops everything
            if state.task is None and (due or state.dirty):
                self._start(state, snapshot, "interval" if due else "change")
        await self._sleep(snapshot)

    async def _look(self, state: _JobState, snapshot: Snapshot, key: tuple[int, int]) -> None:
        """Compute the job's view of ``snapshot``; a relevant difference marks it dirty."""
        if state.version == key:
            return
        job, before = state.job, state.view

        def evaluate() -> tuple[object, bool]:
            view = job.view(snapshot)
            return view, before is not None and job.changed(before, view)

        try:
            view, changed = await asyncio.to_thread(evaluate)
        except Exception as exc:  # a bug in a view must not end the leader's work
            log.error("leader: %s: cannot read snapshot %d: %s", job.name, snapshot.version, exc)
            state.version = key  # not again until the next snapshot
            return
        state.view, state.version = view, key
        state.dirty = state.dirty or changed

    def _start(self, state: _JobState, snapshot: Snapshot, trigger: str) -> None:
        first = state.started is None
        state.started = self._clock()
        state.dirty = False
        why = "first pass as leader" if first else trigger
        if not first and state.retry_at is not None and trigger == "interval":
            why = f"retry after {state.failures} failed"
        log.info("leader: %s pass (%s)", state.job.name, why)
        state.task = asyncio.create_task(
            self._pass(state.job, snapshot, state.view), name=f"spacegate-{state.job.name}"
        )

    @staticmethod
    async def _pass(job: Job, snapshot: Snapshot, view: object) -> bool:
        """Run one pass; whether it completed (False: try again soon)."""
        try:
            await job.run(snapshot, view)
        except LostLeadership as exc:
            log.info("leader: %s pass stopped: %s", job.name, exc)
        except IncompletePass as exc:
            log.warning("leader: %s pass incomplete: %s", job.name, exc)
            return False
        except Exception as exc:
            log.error("leader: %s pass failed: %s", job.name, exc)
            return False
        return True

    def _finished(
        self, state: _JobState, task: asyncio.Task[bool], now: float, snapshot: Snapshot
    ) -> None:
        """Record how a pass ended: a failed one is due again after a growing delay."""
        if task.cancelled() or task.result():
            state.failures, state.retry_at = 0, None
            return
        state.failures += 1
        delay = min(
            state.job.interval(snapshot), self._retry_initial * 2 ** min(state.failures - 1, 16)
        )
        state.retry_at = now + delay
        log.info("leader: %s pass again in %.0fs", state.job.name, delay)

    async def _sleep(self, snapshot: Snapshot) -> None:
        """Until the Lease changes, a snapshot arrives, a pass ends or something is due."""
        now = self._clock()
        deadlines = [self._leadership.lapses_in()]
        if self._changed_at is not None:
            deadlines.append(self._changed_at + self._settle - now)
        for state in self._states:
            if state.task is None and state.started is not None and state.job.wanted(snapshot):
                deadlines.append(state.started + state.job.interval(snapshot) - now)
                if state.retry_at is not None:
                    deadlines.append(state.retry_at - now)
        timeout = max(_MIN_SLEEP, min(deadlines))
        lease = asyncio.create_task(self._leadership.wait_changed())
        wake = asyncio.create_task(self._wake.wait())
        passes = {s.task for s in self._states if s.task is not None}
        try:
            await asyncio.wait(
                {lease, wake, *passes}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in (lease, wake):
                waiter.cancel()
            # gather, not ``suppress(CancelledError)``: a cancellation of this task arriving
            # meanwhile must not be swallowed with the waiters'.
            await asyncio.gather(lease, wake, return_exceptions=True)
        self._wake.clear()

    async def _stop_passes(self) -> None:
        running = [s.task for s in self._states if s.task is not None and not s.task.done()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        for state in self._states:
            state.forget()

    def _set_gauge(self, value: int) -> None:
        if self._gauge is not None:
            self._gauge.set(value)
