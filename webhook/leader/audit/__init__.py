"""The background audit of what already runs, and the policy reports it writes.

- ``findings`` — every workload and Pod listed and judged with ``policy.decide``, owners
  standing for what they own (also what ``spacegate audit`` prints);
- ``passes`` — one pass: violation counts and, where the CRD is served, reports;
- ``child`` — that pass in a child process, killed when the Lease is lost;
- ``reports`` — writing reports only when they change, never touching another's;
- ``metrics`` — ``spacegate_audit_violations`` and the pass timings.
"""
