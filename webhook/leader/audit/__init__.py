"""The background audit of what already runs, and the policy reports it writes."""
