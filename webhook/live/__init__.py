"""Live mode: keeping the snapshot current from registries, the cluster and the config file.

- ``refresher`` — the live :class:`webhook.state.SnapshotState` (and
  :class:`webhook.state.SnapshotFeed`): composes pollers and the namespace map into
  snapshots; the one place namespace changes are coalesced.
- ``poller`` — one registry listed on its own interval, last-known-good kept on failure.
- ``readiness`` and ``reload`` — pure: readiness from statuses; the plan for a config reload.
- ``namespace_map`` — namespace → workspace and mode, written by the reflector.
- ``sources`` — the Harbor and Docker Registry space sources, the factory choosing one per
  registry, and the namespace reflector (list + watch).
- ``config_watch`` — reload the config file on change; keep the old one when the new is bad.
- ``refresh_metrics`` — per-registry refresh metrics.
- ``mode`` — live mode's wiring for ``spacegate serve``.

Everything here only reads. Nothing here runs on the admission path, and nothing here
imports :mod:`webhook.admission` or :mod:`webhook.leader` (the leader's work is joined to
live mode by ``webhook.cli.serve``); HTTP and Kubernetes clients come from
:mod:`webhook.clients`.
"""
