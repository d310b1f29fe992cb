"""The policy the e2e tests and the benchmarks run: one Harbor, two private spaces, two teams.

``team-a`` is bound to workspace 101 and ``team-b`` to workspace 102; ``library`` is public.
A namespace labelled ``workspace.ghippo.io/id: "101"`` may therefore use :data:`TEAM_A` and
:data:`PUBLIC` but not :data:`TEAM_B`. Unknown registries are allowed and unknown spaces
refused (``unknownRegistry: allow``, ``unknownSpace: deny``), and allowed private images get
the pull secret ``registry-secret``.

Bindings come from this config only (``bindings.source: config``): the e2e tests of
RegistrySpaceBinding objects (``tests/e2e/test_bindings.py``) run their own spacegate, and a
second installation reading the same objects would write their statuses too. The entries
keep the short form's lines, so tests can drop one with ``CONFIG.replace(line, "")``.
"""

from __future__ import annotations

WS = "workspace.ghippo.io/id"
MODE = "spacegate.io/mode"

PUBLIC = "harbor.demo.local/library/nginx:1.27"
TEAM_A = "harbor.demo.local/team-a/web:1.2"  # private, bound to workspace 101
TEAM_B = "harbor.demo.local/team-b/api:1.0"  # private, bound to workspace 102

CONFIG = """
workspaceLabel: workspace.ghippo.io/id
policy:
  mode: enforce
  unknownRegistry: allow
  unknownSpace: deny
  pullSecretName: registry-secret
  exemptNamespaces: [kube-system, spacegate-system]
  maxStaleness: 10m
registries:
  - name: harbor
    type: harbor
    url: https://harbor.demo.local
    spaces:
      - {name: library, public: true}
      - {name: team-a, public: false}
      - {name: team-b, public: false}
bindings:
  source: config
  items:
  - {registry: harbor, space: team-a, workspaces: ["101"]}
  - {registry: harbor, space: team-b, workspaces: ["102"]}
"""
