"""RegistrySpaceBinding statuses, written by the leader.

- ``conditions`` — what each object's status should say (``Ready``, ``SpaceFound``,
  ``Conflicted``, ``CredentialsProvisioned``), pure, from a snapshot;
- ``status`` — writing the statuses that differ, through the status subresource.
"""
