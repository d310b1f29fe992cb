"""What the serving process hands its selector child is the snapshot admission decides with."""

from __future__ import annotations

import pickle

from policy.bindings import BindingObject
from policy.config import load_config
from policy.snapshot import NamespaceInfo, Snapshot
from policy.visibility import visible_spaces
from webhook.selector.process import _SnapshotData

CONFIG = """
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    spaces: [{name: library, public: true}, {name: team-a, public: false}]
bindings: {source: both, items: []}
"""


def test_a_space_bound_only_by_a_binding_object_is_offered_by_the_selector_child() -> None:
    bound = BindingObject("team-a", "harbor", "team-a", ("101",))
    served = Snapshot.build(
        load_config(CONFIG),
        namespaces={"a-dev": NamespaceInfo(workspace="101")},
        binding_objects={"team-a": bound},
        version=7,
    )

    # the child receives the snapshot pickled over a pipe and rebuilds it
    child = pickle.loads(pickle.dumps(_SnapshotData.of(served))).build()

    assert child.version == 7
    assert child.bindings == served.bindings
    offered = {space.space for space in visible_spaces(child, "a-dev")}
    assert offered == {space.space for space in visible_spaces(served, "a-dev")}
    assert "team-a" in offered
