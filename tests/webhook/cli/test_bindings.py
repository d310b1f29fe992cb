"""Binding objects on the command line: judged beside the config, exported, the CRD printed.

``spacegate check``/``explain``/``images`` take ``--bindings FILE|DIR`` so CI judges
manifests against the bindings about to be applied; a bad object stops the command with
exit 2 naming the file, the document and the field, exactly as strictly as the apiserver
would refuse it. ``spacegate bindings export`` is the migration from config to objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from policy.bindings import parse_binding_object
from policy.config import load_config
from tests.conftest import REPO
from tests.support.bindings import binding
from webhook.cli.bindings import CRD_FILE, export_documents
from webhook.cli.main import main

CONFIG = """
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    spaces: [{name: team-a, public: false}, {name: team_b, public: false}]
bindings:
  - {registry: harbor, space: team-a, workspaces: ["101"]}
  - {registry: harbor, space: team-a, workspaces: ["102"]}
  - {registry: harbor, space: team_b, workspaces: ["102"]}
namespaces: {a-dev: "101", c-dev: "103"}
"""
DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: c-dev}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: harbor.example.com/team-a/web:1}]}
"""


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "config.yaml").write_text(CONFIG)
    (tmp_path / "deploy.yaml").write_text(DEPLOY)
    (tmp_path / "bindings").mkdir()
    return tmp_path


def check(files: Path, *bindings: str, config: str = "config.yaml") -> int:
    args = ["check", "-f", str(files / "deploy.yaml"), "--config", str(files / config)]
    for target in bindings:
        args += ["--bindings", str(files / target)]
    return main(args)


def test_check_judges_against_binding_objects_about_to_be_applied(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(files) == 1  # c-dev is workspace 103: nothing binds team-a there
    (files / "bindings" / "a.yaml").write_text(yaml.safe_dump(binding("harbor-team-a", ["103"])))
    # a directory of manifests: other kinds beside the binding are skipped
    (files / "bindings" / "other.yaml").write_text(DEPLOY)

    assert check(files, "bindings") == 0
    assert "is bound to workspace 103" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("objects", "expected"),
    [
        (
            [binding("a", ["103", "103"])],
            "(document 1): RegistrySpaceBinding: spec.workspaces[1]: duplicate workspace '103'",
        ),
        ([binding("a", [103])], "spec.workspaces[0]: expected a string, got 103 (quote"),
        ([binding("a", [])], "spec.workspaces: must list at least one workspace"),
        ([binding("a", ["103"], space="Team-A")], "spec.space: expected a space name"),
        (
            [binding("a", ["103"]), binding("a", ["101"])],
            "(document 2): RegistrySpaceBinding 'a' is also defined in",
        ),
    ],
)
def test_a_bad_binding_object_exits_2_naming_the_file_document_and_field(
    files: Path, capsys: pytest.CaptureFixture[str], objects: list[Any], expected: str
) -> None:
    path = files / "bindings" / "bad.yaml"
    path.write_text(yaml.safe_dump_all(objects))

    assert check(files, "bindings/bad.yaml") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"spacegate check: {path}")
    assert expected in err


def test_the_source_decides_how_objects_and_the_config_merge(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (files / "bindings" / "a.yaml").write_text(yaml.safe_dump(binding("harbor-team-a", ["103"])))
    config_only = CONFIG.replace("bindings:\n", "bindings:\n  source: config\n  items:\n")
    config_only = config_only.replace("  - {registry", "    - {registry")
    (files / "config-only.yaml").write_text(config_only)

    assert check(files, "bindings", config="config-only.yaml") == 1
    assert "the RegistrySpaceBinding objects given with --bindings bind nothing" in (
        capsys.readouterr().err
    )


def test_explain_and_images_take_the_objects_too(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (files / "bindings" / "a.yaml").write_text(yaml.safe_dump(binding("harbor-team-a", ["103"])))
    config = str(files / "config.yaml")
    target = str(files / "bindings")

    code = main(
        [
            "explain",
            "harbor.example.com/team-a/web:1",
            "-n",
            "c-dev",
            "--config",
            config,
            "--bindings",
            target,
        ]
    )
    assert code == 0
    assert "bound to:   workspaces 101, 102, 103" in capsys.readouterr().out
    assert main(["images", "-n", "c-dev", "--config", config, "--bindings", target]) == 0
    assert "bound to workspace 103" in capsys.readouterr().out


def test_an_object_naming_an_undeclared_registry_is_a_warning_not_an_error(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    obj = binding("q", ["103"])
    obj["spec"]["registry"] = "quay"
    (files / "bindings" / "q.yaml").write_text(yaml.safe_dump(obj))
    assert check(files, "bindings") == 1  # binds nothing: still refused
    assert "names registry 'quay', which the config does not declare" in capsys.readouterr().err


# --------------------------------------------------------------------------- export


def test_export_writes_one_object_per_space_with_the_union_of_its_workspaces(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = files / "objects.yaml"
    assert main(["bindings", "export", "--config", str(files / "config.yaml"), "-o", str(out)]) == 0
    objects = [parse_binding_object(doc) for doc in yaml.safe_load_all(out.read_text())]

    assert [(o.name, o.space, o.workspaces) for o in objects] == [
        ("harbor-team-a", "team-a", ("101", "102")),
        ("harbor-team-b", "team_b", ("102",)),
    ]
    assert "wrote" in capsys.readouterr().err


def test_exported_objects_bind_exactly_what_the_config_bound(files: Path) -> None:
    config = load_config(CONFIG)
    documents, notes = export_documents(config)
    objects = {d["metadata"]["name"]: parse_binding_object(d) for d in documents}
    from policy.snapshot import Snapshot

    without = load_config(CONFIG.split("bindings:", maxsplit=1)[0] + "namespaces: {a-dev: '101'}\n")
    assert dict(Snapshot.build(without, binding_objects=objects).bindings) == dict(
        Snapshot.build(config).bindings
    )
    assert notes == []


def test_exporting_names_that_would_collide_stay_apart() -> None:
    config = load_config(
        "registries: [{name: a-b, type: harbor, url: https://x}, {name: a, type: harbor,"
        " url: https://y}]\nbindings: [{registry: a-b, space: c, workspaces: ['1']},"
        " {registry: a, space: b-c, workspaces: ['1']}, {registry: a, space: d, workspaces: []}]\n"
    )
    documents, notes = export_documents(config)
    names = [d["metadata"]["name"] for d in documents]
    assert len(set(names)) == 2 and "a-b-c" in names
    assert notes == [
        "binding of space d of registry a lists no workspace: left out (an object "
        "binds at least one)"
    ]


def test_the_crd_command_prints_what_the_chart_ships(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bindings", "crd"]) == 0
    assert capsys.readouterr().out == (REPO / CRD_FILE).read_text()
