"""The ``spacegate`` commands (console script ``spacegate``, also ``python -m webhook``).

- ``main`` — argument parsing and dispatch; heavy imports happen inside each command.
- ``check`` — the dry-run policy check over manifests; ``manifests`` reads them (files,
  directories, stdin, lists, multi-document Helm output); ``table`` renders CLI tables.
- ``explain`` — ``explain`` (why an image is allowed or refused) and ``images`` (what a
  namespace may use).
- ``snapshot`` — sync once from live sources and write an offline config.
- ``certs`` — ``certs generate``: a CA and serving certificate for a Service.
- ``provision`` — one pull-secret provisioning pass, or its plan.
- ``audit`` — judge what runs in the cluster like ``check``, and ``--what-if`` (a new
  config, binding manifests, ``--what-if-delete``).
- ``bindings`` — RegistrySpaceBinding objects from files (``--bindings``), ``bindings
  export`` (config bindings as objects) and ``bindings crd``.
- ``impact`` — the on-the-spot impact of a binding change, injected into admission by
  ``serve``.
- ``cluster`` — connecting to the cluster and its live snapshot, for ``audit`` and ``provision``.
- ``serve`` — the HTTPS webhook: the one place that joins :mod:`webhook.admission`,
  :mod:`webhook.live` and :mod:`webhook.leader`.
- ``exits`` — the exit codes every command shares.
"""
