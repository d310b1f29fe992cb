"""What only the holder of the Lease does, off the admission path.

Every replica serves admission; one replica at a time writes, so that two never fight
over a robot, a Secret, a report or a binding's status:

- ``lease`` — the ``coordination.k8s.io`` Lease elector (client-go's protocol): who leads,
  and when that changes;
- ``provisioning`` — pull-secret provisioning: the plan (pure), the Secrets store, the
  Harbor robot client, the writer, its metrics;
- ``audit`` — the background audit of what already runs: findings, the pass (in a child
  process), policy reports, metrics, and the impact index binding reviews read;
- ``bindings`` — RegistrySpaceBinding statuses: what each should say (pure), and writing
  the ones that changed through the status subresource;
- ``jobs`` — what each job reads of a snapshot (its *view*) and which differences call for
  a pass;
- ``loop`` — the one loop: a pass starts on gaining the Lease, on a change a job reads, or
  on its interval; losing the Lease stops work at once;
- ``parts`` — the one factory of the elector, store, provisioner and auditor, for
  ``spacegate serve`` (``leader_work``) and ``spacegate provision``.

The leader reads snapshots through :class:`webhook.state.SnapshotFeed` and never imports
:mod:`webhook.live` or :mod:`webhook.admission`; ``webhook.cli.serve`` joins them.
"""
