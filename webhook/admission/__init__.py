"""The admission server: from an AdmissionReview to a reply, with no network I/O on the way.

- ``app`` — composition: the two admission endpoints in front of Starlette (health,
  readiness, metrics), the lifespan that opens the snapshot state.
- ``endpoint`` — ``/validate`` and ``/mutate`` as raw ASGI: answers for every malformed
  request; ``bodies`` reads them (size cap, deadline, memory budget, decode slots for large
  ones in worker threads).
- ``outcomes`` — whether a review gets a decision (workloads; Namespaces go to the guard),
  its reply for each endpoint, and the per-decision reply memo.
- ``review`` — the AdmissionReview codec: decode and check requests, encode replies the
  apiserver accepts.
- ``bindings`` — RegistrySpaceBinding reviews: warnings about the running workloads a
  change would strand (from the snapshot's impact index, else an injected probe under a
  time budget); only with ``bindings.requireAcknowledgement`` a refusal.
- ``server`` and ``_batching`` — uvicorn over reloading TLS, one write per reply;
  ``connections`` and ``_http`` — every connection held to head and body deadlines, a
  bounded head and a capped, evicting connection table.
- ``metrics`` and ``logs`` — Prometheus request metrics; JSON log lines and decision logs.

It reads a :class:`webhook.state.SnapshotState` and never imports :mod:`webhook.live` or
:mod:`webhook.leader`, nor any HTTP or Kubernetes client (``httpx``, ``kubernetes``,
:mod:`webhook.clients`): import-linter enforces both.
"""
