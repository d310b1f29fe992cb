"""Everything of spacegate that talks: to the apiserver, to registries, to the cluster, to you.

The rooms, each a subpackage (``docs/architecture.md``; import-linter keeps them apart):

- :mod:`webhook.admission` — the HTTPS admission server: endpoints, AdmissionReview codec,
  TLS serving, request metrics, decision logs. Reads a snapshot; never talks to a registry
  or the apiserver (it may not even import an HTTP or Kubernetes client).
- :mod:`webhook.live` — keeping the snapshot current: registry sources, the namespace and
  RegistrySpaceBinding reflectors, the refresher, config watching. It only reads.
- :mod:`webhook.leader` — what only the holder of the Lease does, off the admission path:
  pull-secret provisioning (Harbor robots, Secrets), the background audit, its policy
  reports and impact index, RegistrySpaceBinding statuses, and the one loop that runs them
  when something they read changes.
- :mod:`webhook.cli` — the ``spacegate`` commands; ``webhook.cli.serve`` is the one place
  where the admission server, live mode and the leader's work are joined.

Admission, live and leader never import each other. Below them :mod:`webhook.clients`
holds what live and leader both call (the HTTP client and its retries, Kubernetes client
loading and paging, Harbor paging, backoff, errors); below everything,
:mod:`webhook.state` (the contract between whoever keeps the snapshot and whoever reads it)
and :mod:`webhook.settings` (reading the config file or the embedded demo).
"""
