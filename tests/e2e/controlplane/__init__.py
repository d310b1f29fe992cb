"""The old address of the control-plane runner, kept so ``python -m tests.e2e.controlplane``
still works (scripts and notes written before the control plane moved to
:mod:`tests.support.controlplane`). Nothing else lives here."""
