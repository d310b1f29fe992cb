"""Live mode: keeping the snapshot current from registries, the cluster and the config file.

- ``refresher`` — the live :class:`webhook.state.SnapshotState`: composes pollers and the
  namespace map into snapshots; the one place namespace changes are coalesced.
- ``poller`` — one registry listed on its own interval, last-known-good kept on failure.
- ``readiness`` and ``reload`` — pure: readiness from statuses; the plan for a config reload.
- ``namespace_map`` — namespace → workspace and mode, written by the reflector.
- ``sources`` — Harbor and Docker Registry clients (``http``: auth, retries, paging, the
  same-origin rule), the factory choosing one per registry, the namespace reflector, and
  ``harbor_robots`` (the robot API provisioning uses).
- ``kube`` — how a Kubernetes client is found (kubeconfig, in-cluster).
- ``config_watch`` — reload the config file on change; keep the old one when the new is bad.
- ``refresh_metrics`` — per-registry refresh metrics.
- ``backoff`` — the one exponential backoff with jitter.
- ``mode`` — live mode's wiring for ``spacegate serve``, and the leader's work beside it.
- ``leader`` — the Lease elector: only its holder writes.
- ``provisioner`` and ``pull_secrets`` — pull-secret provisioning: the plan and its writing.
- ``audit`` — what already runs: paged lists, findings, policy reports, the background audit.

Nothing here runs on the admission path, and nothing here imports :mod:`webhook.admission`.
"""
