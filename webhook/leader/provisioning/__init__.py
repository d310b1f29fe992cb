"""Pull-secret provisioning: Harbor robots and the pull Secrets that carry their credentials."""
