"""The leader's loop: a pass starts when it can matter, and stops when the Lease is lost.

A fake leadership (gained and lost on command), a feed of snapshots the test publishes, and
jobs that record their passes: each test is one sequence of events and the passes it must
(and must not) start. What each real job counts as a change is in ``test_jobs.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from policy.config import load_config
from policy.snapshot import NamespaceInfo, Snapshot
from webhook.leader.lease import LostLeadership
from webhook.leader.loop import IncompletePass, LeaderLoop

CONFIG = load_config(
    """
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    spaces: [{name: team-a, public: false}]
bindings:
  - {registry: harbor, space: team-a, workspaces: ["101"]}
"""
)
SETTLE = 0.05
# Long enough that a pass the loop should not start would have started by then.
QUIET = 0.3


class Leadership:
    """Leads or not as the test says; says so through ``wait_changed``."""

    def __init__(self) -> None:
        self.leader = False
        self._changed = asyncio.Event()

    @property
    def is_leader(self) -> bool:
        return self.leader

    def lapses_in(self) -> float:
        return 3600.0 if self.leader else 0.0

    async def wait_changed(self) -> None:
        await self._changed.wait()
        self._changed.clear()

    def become(self, leader: bool) -> None:
        self.leader = leader
        self._changed.set()


class Feed:
    """Snapshots as the refresher publishes them: a new version each time."""

    def __init__(self) -> None:
        self.version = 1
        self.snapshot = self._build({})
        self._listeners: list[Callable[[], None]] = []

    def _build(self, namespaces: dict[str, str | None]) -> Snapshot:
        infos = {name: NamespaceInfo(workspace=ws) for name, ws in namespaces.items()}
        return Snapshot.build(CONFIG, namespaces=infos, version=self.version)

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def publish(self, **namespaces: str | None) -> None:
        self.version += 1
        self.snapshot = self._build(namespaces)
        for listener in self._listeners:
            listener()


@dataclass
class Job:
    """Reads the namespaces of workspace 101; records the versions its passes started from."""

    name: str = "job"
    every: float = 3600.0
    hold: asyncio.Event | None = None  # a pass waits for it: a long pass
    fail: bool = False
    started: list[int] = field(default_factory=list)
    cancelled: int = 0
    rev: int = 0  # what else the view reads (another job's passes)
    extra: object = None  # ... and its value, part of the view

    def revision(self) -> int:
        return self.rev

    def wanted(self, snapshot: Snapshot) -> bool:
        return True

    def interval(self, snapshot: Snapshot) -> float:
        return self.every

    def view(self, snapshot: Snapshot) -> object:
        names = sorted(n for n, info in snapshot.namespaces.items() if info.workspace == "101")
        return (names, self.extra)

    def changed(self, before: object, after: object) -> bool:
        return before != after

    async def run(self, snapshot: Snapshot, view: object) -> None:
        self.started.append(snapshot.version)
        if self.fail:
            raise RuntimeError("Harbor answered 503")
        if self.hold is not None:
            try:
                await self.hold.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise


@contextlib.asynccontextmanager
async def running(
    *jobs: Job, leader: bool = True
) -> AsyncIterator[tuple[Leadership, Feed, LeaderLoop]]:
    leadership, feed = Leadership(), Feed()
    leadership.leader = leader
    loop = LeaderLoop(leadership, feed, list(jobs), settle=SETTLE)
    task = asyncio.create_task(loop.run())
    try:
        yield leadership, feed, loop
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(check: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.005)


def test_a_new_leader_starts_a_pass_at_once() -> None:
    job = Job()

    async def scenario() -> None:
        async with running(job, leader=False) as (leadership, _, _):
            await asyncio.sleep(QUIET)
            assert job.started == []  # not the leader: nothing runs
            leadership.become(True)
            await until(lambda: len(job.started) == 1, timeout=0.5)

    asyncio.run(scenario())


def test_a_snapshot_that_changes_nothing_the_job_reads_starts_no_pass() -> None:
    """A registry listed again with the same projects, a namespace outside the workspace
    created and deleted: new snapshot versions, the same view, no pass."""
    job = Job()

    async def scenario() -> None:
        async with running(job) as (_, feed, _):
            await until(lambda: len(job.started) == 1)
            for _ in range(5):
                feed.publish()  # re-listed: the same content
                await asyncio.sleep(0.02)
            feed.publish(scratch=None)  # a namespace of no workspace came...
            feed.publish()  # ... and went
            await asyncio.sleep(QUIET)
            assert job.started == [1]

    asyncio.run(scenario())


def test_a_relevant_change_starts_a_pass_within_the_settle_time() -> None:
    job = Job()

    async def scenario() -> None:
        async with running(job) as (_, feed, _):
            await until(lambda: len(job.started) == 1)
            loop = asyncio.get_running_loop()
            changed = loop.time()
            feed.publish(**{"a-dev": "101"})
            await until(lambda: len(job.started) == 2, timeout=1.0)
            assert loop.time() - changed < SETTLE + 0.2
            assert job.started[-1] == feed.version

    asyncio.run(scenario())


def test_a_burst_of_changes_is_one_pass_with_the_last_snapshot() -> None:
    job = Job()

    async def scenario() -> None:
        async with running(job) as (_, feed, _):
            await until(lambda: len(job.started) == 1)
            names: dict[str, str | None] = {}
            for i in range(50):
                names[f"ns-{i}"] = "101"
                feed.publish(**names)
            await until(lambda: len(job.started) == 2)
            await asyncio.sleep(QUIET)
            assert job.started == [1, feed.version]

    asyncio.run(scenario())


def test_a_change_during_a_pass_starts_one_more_pass_after_it() -> None:
    hold = asyncio.Event()
    job = Job(hold=hold)

    async def scenario() -> None:
        async with running(job) as (_, feed, _):
            await until(lambda: len(job.started) == 1)
            feed.publish(**{"a-dev": "101"})
            feed.publish(**{"a-dev": "101", "b-dev": "101"})
            await asyncio.sleep(QUIET)
            assert len(job.started) == 1  # one pass at a time
            hold.set()
            await until(lambda: len(job.started) == 2)
            await asyncio.sleep(QUIET)
            assert job.started == [1, feed.version]

    asyncio.run(scenario())


def test_losing_the_lease_cancels_the_running_pass_at_once_and_regaining_starts_one() -> None:
    job = Job(hold=asyncio.Event())

    async def scenario() -> None:
        async with running(job) as (leadership, feed, _):
            await until(lambda: len(job.started) == 1)
            leadership.become(False)
            await until(lambda: job.cancelled == 1, timeout=0.5)
            feed.publish(**{"a-dev": "101"})  # changes while not leading start nothing
            await asyncio.sleep(QUIET)
            assert len(job.started) == 1
            leadership.become(True)
            await until(lambda: len(job.started) == 2, timeout=0.5)

    asyncio.run(scenario())


def test_without_changes_a_pass_starts_every_interval() -> None:
    job = Job(every=0.1)

    async def scenario() -> None:
        async with running(job):
            await asyncio.sleep(0.55)
        assert 3 <= len(job.started) <= 7

    asyncio.run(scenario())


def test_a_failing_pass_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    job = Job(fail=True)

    async def scenario() -> None:
        async with running(job) as (_, feed, _):
            await until(lambda: len(job.started) == 1)
            feed.publish(**{"a-dev": "101"})
            await until(lambda: len(job.started) == 2)

    asyncio.run(scenario())
    assert "leader: job pass failed: Harbor answered 503" in caplog.text


def test_a_failed_pass_is_tried_again_soon_and_later_and_later() -> None:
    job = Job(fail=True)

    async def scenario() -> None:
        async with running(job) as (_, _, loop):
            loop._retry_initial = 0.1
            clock = asyncio.get_running_loop()
            await until(lambda: len(job.started) == 1)
            first = clock.time()
            await until(lambda: len(job.started) == 2, timeout=1.0)
            second = clock.time()
            await until(lambda: len(job.started) == 3, timeout=1.0)
            third = clock.time()
            assert 0.08 < second - first < 0.5  # not the hour-long interval
            assert third - second > (second - first) * 1.5  # backing off

    asyncio.run(scenario())


def test_an_incomplete_pass_is_tried_again_and_a_complete_one_is_not() -> None:
    class Incomplete(Job):
        async def run(self, snapshot: Snapshot, view: object) -> None:
            self.started.append(snapshot.version)
            if len(self.started) == 1:
                raise IncompletePass("2 Secrets could not be written")

    job = Incomplete()

    async def scenario() -> None:
        async with running(job) as (_, _, loop):
            loop._retry_initial = 0.05
            await until(lambda: len(job.started) == 2, timeout=1.0)
            await asyncio.sleep(QUIET)
            assert len(job.started) == 2  # done: back to its interval

    asyncio.run(scenario())


def test_a_view_that_cannot_be_computed_is_logged_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Flaky(Job):
        def view(self, snapshot: Snapshot) -> object:
            if snapshot.version == 2:
                raise KeyError("registry 'gone'")
            return super().view(snapshot)

    job = Flaky()

    async def scenario() -> None:
        async with running(job) as (_, feed, _):
            await until(lambda: len(job.started) == 1)
            feed.publish(**{"a-dev": "101"})  # version 2: its view fails
            await asyncio.sleep(QUIET)
            feed.publish(**{"a-dev": "101", "b-dev": "101"})  # version 3: read again
            await until(lambda: len(job.started) == 2)

    asyncio.run(scenario())
    assert "leader: job: cannot read snapshot 2: \"registry 'gone'\"" in caplog.text


def test_a_pass_stopped_by_a_lost_lease_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    class Guarded(Job):
        async def run(self, snapshot: Snapshot, view: object) -> None:
            self.started.append(snapshot.version)
            raise LostLeadership("not the leader of Lease spacegate-system/spacegate-provisioner")

    job = Guarded()
    caplog.set_level(logging.INFO, logger="webhook.leader.loop")

    async def scenario() -> None:
        async with running(job):
            await until(lambda: len(job.started) == 1)
            await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert "pass stopped: not the leader" in caplog.text
    assert "pass failed" not in caplog.text


def test_jobs_run_side_by_side_so_a_long_pass_delays_no_other_job() -> None:
    slow, quick = Job("audit", hold=asyncio.Event()), Job("provisioning")

    async def scenario() -> None:
        async with running(slow, quick) as (_, feed, _):
            await until(lambda: len(slow.started) == 1 and len(quick.started) == 1)
            feed.publish(**{"a-dev": "101"})
            await until(lambda: len(quick.started) == 2)
            assert len(slow.started) == 1  # still in its first pass

    asyncio.run(scenario())


def test_another_jobs_finished_pass_makes_a_job_look_again_without_a_new_snapshot() -> None:
    """Binding statuses report what the last provisioning pass did: when that pass ends,
    the status job's revision moves and its view is computed again, although no snapshot
    came; a pass starts only if the view changed."""
    job = Job()

    async def scenario() -> None:
        async with running(job) as (_, feed, loop):
            await until(lambda: len(job.started) == 1)
            job.rev += 1  # the other job finished a pass that changed nothing we read
            loop._wake.set()
            await asyncio.sleep(QUIET)
            assert job.started == [1]
            job.extra, job.rev = "3 of 3 Secrets", job.rev + 1  # ...and one that did
            loop._wake.set()
            await until(lambda: len(job.started) == 2, timeout=1.0)
            assert job.started == [1, 1]  # the same snapshot, looked at again
            assert feed.version == 1

    asyncio.run(scenario())


def test_stopping_the_loop_always_stops_it_whatever_it_is_doing() -> None:
    """``serve`` stops the leader's work by cancelling the loop: whatever the loop is doing
    at that moment (starting a pass, waiting, waking because a pass ended), it must end.
    Cancelled after 0, 1, 2, ... turns of the event loop, it meets every step of a cycle."""
    job = Job(every=0.0)  # a pass that ends at once, again and again

    async def scenario() -> None:
        for steps in range(60):
            leadership, feed = Leadership(), Feed()
            leadership.leader = True
            task = asyncio.create_task(LeaderLoop(leadership, feed, [job], settle=0).run())
            for _ in range(steps):
                await asyncio.sleep(0)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=1)
            assert done, f"the loop went on after being cancelled {steps} steps in"

    asyncio.run(scenario())
