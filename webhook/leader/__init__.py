"""What only the holder of the Lease does, off the admission path: provisioning and the audit."""
