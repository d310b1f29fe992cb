"""Everything of spacegate that talks: to the apiserver, to registries, to the cluster, to you.

Three rooms, each a subpackage (``docs/architecture.md``; import-linter keeps them apart):

- :mod:`webhook.admission` — the HTTPS admission server: endpoints, AdmissionReview codec,
  TLS serving, request metrics, decision logs. Reads a snapshot; never talks to a registry.
- :mod:`webhook.live` — keeping the snapshot current: registry sources, the namespace
  reflector, the refresher, config watching, Kubernetes client loading.
- :mod:`webhook.cli` — the ``spacegate`` commands; ``webhook.cli.serve`` is the one place
  where the admission server and live mode are joined.

Below the rooms: :mod:`webhook.state` (what the admission server needs from whoever keeps
the snapshot) and :mod:`webhook.settings` (reading the config file or the embedded demo).
"""
