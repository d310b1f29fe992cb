"""Names the dead-code check (vulture, ``make lint``) cannot see being used, each with why.

vulture reports a name as unused when no code of ``policy``, ``webhook`` or ``certs`` mentions
it. Code that only tests read counts as dead too: tests and benchmarks are not scanned. The
names below are used by a framework, a protocol or a wire format instead; mentioning one here
marks that name, and only that name, as used (``_`` answers any attribute).
"""

from __future__ import annotations


class _AnyObject:
    def __getattr__(self, name: str) -> object:
        return None


_ = _AnyObject()

# prometheus_client's CollectorRegistry calls collect() on each registered collector at every
# scrape (webhook/admission/metrics.py, _AdmissionSeries).
_.collect

# asyncio.Transport's interface: the HTTP protocol uvicorn runs may write through writelines()
# (webhook/admission/_batching.py, StepBatchingTransport).
_.writelines

# uvicorn.Server's main loop polls should_exit (webhook/admission/server.py sets it on SIGTERM).
_.should_exit

# asyncio.Protocol's interface: the transport calls data_received() with every piece read, and
# uvicorn's request cycle reads keep_alive when its reply is done, closing the connection if
# it is False (webhook/admission/_http.py, GuardedHttpProtocol).
_.data_received
_.keep_alive

# The logging module reads these switches for every record (webhook/admission/logs.py turns
# them off).
_.logThreads
_.logProcesses
_.logMultiprocessing

# Keys of the AdmissionReview reply TypedDicts, written as dict literals and read by the
# apiserver (webhook/admission/review.py, ResponseDict and ReviewDict).
_.auditAnnotations
_.patchType
_.apiVersion

# A keyword of the SnapshotState.readiness protocol; the static state is always ready and
# ignores it (webhook/state.py).
_.staleness

# policy.reference's FamiliarString (Reference.familiar): part of the parser's interface, kept
# equal to the upstream library's by tests/policy/test_reference*.py.
_.familiar

# Written to the Lease as the Kubernetes API defines it (leader/lease.py): read by other
# Lease holders and by people (`kubectl get lease -o yaml`), never by spacegate itself.
_.acquire_time

# Fields of Harbor's robot listing, kept for the dry-run plan and logs of `spacegate provision`
# and read by the robot client's tests (leader/provisioning/robots.py).
_.creation_time

# What a provisioning pass did, for callers that inspect it (`spacegate provision`, tests):
# whether the plan was empty and whether it was applied.
_.empty
_.applied

# The namespace reflector's counters (live/sources/namespaces.py): how often it relisted,
# reconnected and applied an event; tests read them to see the list-watch protocol at work.
_.relists
_.reconnects
_.events

# uvicorn.Server calls it once listening (webhook/admission/server.py overrides it to say https).
_._log_started_message
