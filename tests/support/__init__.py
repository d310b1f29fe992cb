"""What the e2e tests and the benchmarks share: a real control plane and the helpers around it.

- :mod:`.controlplane`: etcd, kube-apiserver and kube-controller-manager built from pinned
  upstream Go modules and run on 127.0.0.1 (``python -m tests.support.controlplane``).
- :mod:`.procfs`: which processes use a path and which TCP sockets they hold, from ``/proc``.

``tests/e2e/conftest.py`` turns these into fixtures; ``bench/`` uses them directly.
"""
