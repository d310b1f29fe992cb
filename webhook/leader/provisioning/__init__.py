"""Pull-secret provisioning: least-privilege Harbor robots, and the Secrets that carry them.

- ``plan`` — pure: from what exists to what must exist (``policy.provisioning``), robots
  first, then every Secret's content rendered once;
- ``writer`` — a pass: observe, plan, apply in the safe order (new robot, its credential
  kept, Secrets, old robot deleted), every write guarded by the Lease;
- ``secrets`` — the Kubernetes side: pull Secrets in namespaces, robot credentials at home;
- ``robots`` — the Harbor robot API client (list, create, delete; never update);
- ``metrics`` — what provisioning manages and how its passes go.
"""
