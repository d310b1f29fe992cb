"""A minimal config the parser and dump tests share."""

from __future__ import annotations

MINIMAL = """
registries:
  - name: harbor
    type: harbor
    url: https://Harbor.Example.com
    spaces:
      - {name: library, public: true}
      - {name: team-a}
bindings:
  - {registry: harbor, space: team-a, workspaces: [101, "102"]}
namespaces:
  team-a-dev: 101
"""
