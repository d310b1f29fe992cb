"""``python -m tests.e2e.controlplane --kubeconfig FILE``: the same runner as
``python -m tests.support.controlplane`` (its documented name), under its first name."""

from __future__ import annotations

import sys

from tests.support.controlplane.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
