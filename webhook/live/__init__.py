"""Live mode: keeping the snapshot current from registries, the cluster and the config file.

- ``refresher`` — the live :class:`webhook.state.SnapshotState` (and
  :class:`webhook.state.SnapshotFeed`): composes pollers, the namespace map, the binding
  map and the impact index into snapshots; the one place their changes are coalesced.
- ``poller`` — one registry listed on its own interval, last-known-good kept on failure.
- ``readiness`` and ``reload`` — pure: readiness from statuses; the plan for a config reload.
- ``synced_map`` — what a reflector's map is (one writer thread, immutable copies, sync
  state); ``namespace_map`` — namespace → workspace and mode; ``binding_map`` — the
  RegistrySpaceBinding objects and whether their CRD is served.
- ``sources`` — the Harbor and Docker Registry space sources, the factory choosing one per
  registry, the one list + watch loop (``reflector``) and its uses: namespaces,
  RegistrySpaceBindings, the leader's impact index.
- ``config_watch`` — reload the config file on change; keep the old one when the new is bad.
- ``refresh_metrics`` — per-registry refresh metrics.
- ``mode`` — live mode's wiring for ``spacegate serve``.

Everything here only reads. Nothing here runs on the admission path, and nothing here
imports :mod:`webhook.admission` or :mod:`webhook.leader` (the leader's work is joined to
live mode by ``webhook.cli.serve``); HTTP and Kubernetes clients come from
:mod:`webhook.clients`.
"""
