"""What the e2e tests and the benchmarks share: a real control plane and the helpers around it.

- :mod:`.controlplane`: etcd, kube-apiserver and kube-controller-manager built from pinned
  upstream Go modules and run on 127.0.0.1 (``python -m tests.support.controlplane``).
- :mod:`.spacegate`: ``spacegate serve`` as a local process in live mode on that plane.
- :mod:`.webhooks`: the chart's webhook configurations pointing at such a process, and what
  the apiserver answers once they are live.
- :mod:`.scenario`: the policy they run (two private spaces, two workspaces) and its images.
- :mod:`.manifests` and :mod:`.namespaces`: objects and per-test namespaces sent to the plane.
- :mod:`.pull_secrets`, :mod:`.policy_reports`, :mod:`.metrics`: reading back what spacegate
  wrote or exposes (pull Secrets, PolicyReports, Prometheus samples).
- :mod:`.service_accounts`: acting as a ServiceAccount instead of the admin.
- :mod:`.waiting`, :mod:`.ports`, :mod:`.procfs`: bounded polling, free loopback ports, and
  which processes and sockets exist, read from ``/proc``.

``tests/e2e/conftest.py`` turns these into fixtures; ``bench/`` uses them directly.
"""
