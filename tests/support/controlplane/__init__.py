"""A real Kubernetes control plane for tests, built from pinned upstream Go modules.

- :mod:`.build`: ``ensure_binaries()`` builds etcd, kube-apiserver and kube-controller-manager
  once per pinned version into a user cache directory
  (``python -m tests.support.controlplane.build``).
- :mod:`.plane`: ``ControlPlane`` runs them on 127.0.0.1 with throw-away certificates.
- :mod:`.pki`: the certificates and keys.
- ``python -m tests.support.controlplane --kubeconfig FILE`` runs one by hand
  (``python -m tests.e2e.controlplane``, its first name, still works).

Nothing is imported here, so that ``python -m tests.support.controlplane.build`` does not find
its own module already imported by the package (runpy warns about that).
"""
