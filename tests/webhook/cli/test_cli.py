"""The offline commands: check, explain, images. Exit codes are a CI contract."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, REPO
from webhook.cli.main import main

DEMO = str(EXAMPLES / "demo.yaml")
MANIFESTS = str(EXAMPLES / "manifests")

DENIED_POD = """
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: team-b-dev}
spec:
  containers: [{name: app, image: harbor.demo.local/team-a/app:1}]
"""
ALLOWED_POD = DENIED_POD.replace("team-a/app", "library/app")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_over_the_examples_reports_each_workload_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "check", "-f", MANIFESTS, "--config", DEMO)
    assert code == 1
    assert "4 workloads checked: 2 admitted, 2 denied; 1 other objects skipped" in out
    assert "CronJob/nightly-report" in out
    assert "private space 'team-b' of registry 'harbor' is not bound to workspace 101" in out


def test_check_takes_several_files_after_one_flag_or_several_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text(ALLOWED_POD)
    (tmp_path / "b.yaml").write_text(DENIED_POD)
    code, out, _ = run(capsys, "check", "-f", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml"))
    assert code == 1
    assert "2 workloads checked: 1 admitted, 1 denied" in out
    code, out, _ = run(
        capsys, "check", "-f", str(tmp_path / "a.yaml"), "-f", str(tmp_path / "b.yaml")
    )
    assert "2 workloads checked: 1 admitted, 1 denied" in out


def test_check_exits_0_when_everything_is_admitted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ok.yaml").write_text(ALLOWED_POD)
    code, out, _ = run(capsys, "check", "-f", str(tmp_path / "ok.yaml"))
    assert code == 0
    assert "1 workloads checked: 1 admitted, 0 denied" in out


def test_check_json_has_one_object_per_workload_with_per_container_verdicts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "check", "-f", MANIFESTS, "--config", DEMO, "-o", "json")
    assert code == 1
    results = json.loads(out)
    by_name = {r["name"]: r for r in results}
    assert set(by_name) == {"web", "nightly-report", "tools", "worker"}
    cron = by_name["nightly-report"]
    assert cron["kind"] == "CronJob"
    assert cron["namespace"] == "team-a-dev"
    assert cron["allowed"] is False
    assert cron["containers"] == [
        {
            "source": "container",
            "name": "report",
            "image": "harbor.demo.local/team-b/report:3.0",
            "verdict": "denied",
            "reason": cron["containers"][0]["reason"],
        }
    ]
    assert by_name["web"]["allowed"] is True


VOLUME_POD = """
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: team-a-dev}
spec:
  containers: [{name: app, image: harbor.demo.local/library/app:1}]
  volumes:
    - {name: models, image: {reference: harbor.demo.local/team-b/models:1}}
"""


def test_check_lists_image_volumes_as_rows_naming_the_volume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(VOLUME_POD)

    code, table, _ = run(capsys, "check", "-f", str(manifest))
    _, out, _ = run(capsys, "check", "-f", str(manifest), "-o", "json")

    assert code == 1
    [row] = [line for line in table.splitlines() if "models" in line]
    assert row.split()[:5] == [
        "team-a-dev",
        "Pod/p",
        "models",
        "(volume)",
        "harbor.demo.local/team-b/models:1",
    ]
    assert "denied" in row
    [result] = json.loads(out)
    assert [(c["source"], c["name"], c["verdict"]) for c in result["containers"]] == [
        ("container", "app", "allowed"),
        ("volume", "models", "denied"),
    ]


def test_check_reads_stdin_lists_and_multi_document_helm_output(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    helm_output = (
        "---\n# Source: app/templates/pod.yaml\n"
        + DENIED_POD
        + "---\n# Source: app/templates/empty.yaml\n---\n"
        + json.dumps({"apiVersion": "v1", "kind": "List", "items": [{"kind": "ConfigMap"}]})
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(helm_output))
    code, out, _ = run(capsys, "check", "-f", "-")
    assert code == 1
    assert "1 workloads checked: 0 admitted, 1 denied; 1 other objects skipped" in out


def test_the_namespace_comes_from_the_object_then_the_flag_then_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "pods.yaml"
    file.write_text(
        "kind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: harbor.demo.local/team-a/x}]}\n"
        "---\nkind: Pod\nmetadata: {name: b, namespace: team-b-dev}\n"
        "spec: {containers: [{name: c, image: harbor.demo.local/team-a/x}]}\n"
    )
    _, out, _ = run(capsys, "check", "-f", str(file), "-o", "json", "-n", "team-a-dev")
    assert [(r["name"], r["namespace"], r["allowed"]) for r in json.loads(out)] == [
        ("a", "team-a-dev", True),
        ("b", "team-b-dev", False),
    ]
    _, out, _ = run(capsys, "check", "-f", str(file), "-o", "json")
    assert json.loads(out)[0]["namespace"] == "default"


def test_custom_resources_named_like_workloads_and_list_kinds_are_handled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "mixed.yaml"
    file.write_text(
        "apiVersion: batch.volcano.sh/v1alpha1\nkind: Job\nmetadata: {name: vcjob}\n"
        "spec: {tasks: [{replicas: 1}]}\n---\n"
        "apiVersion: v1\nkind: PodList\nitems:\n"
        "  - {apiVersion: v1, kind: Pod, metadata: {name: listed, namespace: team-b-dev},"
        "     spec: {containers: [{name: c, image: harbor.demo.local/team-a/x}]}}\n"
    )
    code, out, _ = run(capsys, "check", "-f", str(file), "-o", "json")
    assert code == 1
    assert [(r["kind"], r["name"], r["allowed"]) for r in json.loads(out)] == [
        ("Pod", "listed", False)
    ]


def test_a_yaml_syntax_error_names_the_file_and_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Pod\nmetadata:\n  name: [oops\n")
    code, _, err = run(capsys, "check", "-f", str(bad))
    assert code == 2
    assert f"{bad}:4:" in err
    assert "invalid YAML" in err


def test_a_malformed_workload_is_reported_and_the_rest_still_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "mixed.yaml"
    file.write_text(
        "kind: Deployment\nmetadata: {name: broken}\nspec: {template: 3}\n---\n" + ALLOWED_POD
    )
    code, out, err = run(capsys, "check", "-f", str(file))
    assert code == 2
    assert "Deployment: spec.template.spec must be an object" in err
    assert "Pod/p" in out


def test_missing_files_and_bad_configs_exit_2_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "check", "-f", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "nope.yaml: no such file or directory" in err
    config = tmp_path / "cfg.yaml"
    config.write_text("policy: {mode: strict}\n")
    code, _, err = run(capsys, "check", "-f", MANIFESTS, "--config", str(config))
    assert code == 2
    assert 'policy.mode: expected enforce, warn, audit, got "strict"' in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["check"])
    assert info.value.code == 2
    assert "-f/--filename" in capsys.readouterr().err


def test_explain_walks_through_the_decision(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", "harbor.demo.local/team-b/app:1", "-n", "team-a-dev")
    assert code == 1
    assert "registry:   harbor (harbor, integrated by the platform)" in out
    assert "space:      team-b: private" in out
    assert "bound to:   workspaces 102" in out
    assert "namespace:  team-a-dev (workspace 101, mode enforce)" in out
    code, out, _ = run(capsys, "explain", "harbor.demo.local/team-a/app:1", "-n", "team-a-dev")
    assert code == 0
    assert "pull secret: registry-secret is injected" in out


def test_explain_reports_an_invalid_reference(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", "Harbor.demo.local/TEAM/app", "-n", "sandbox")
    assert code == 1
    assert "must be lowercase" in out


def test_images_lists_what_a_namespace_may_use(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "images", "-n", "team-b-dev", "-o", "json")
    assert code == 0
    listing = json.loads(out)
    spaces = {(s["registry"], s["space"]): s for s in listing["spaces"]}
    assert ("harbor", "library") in spaces
    assert ("harbor", "team-b") in spaces and spaces[("harbor", "team-b")]["needsPullSecret"]
    assert ("harbor", "team-a") not in spaces
    assert ("team-b-registry", "*") in spaces
    _, out, _ = run(capsys, "images", "-n", "sandbox")
    assert "library" in out and "team-a" not in out and "team-b-registry" not in out


def test_the_console_script_and_python_dash_m_run_the_cli() -> None:
    spacegate = Path(sys.executable).parent / "spacegate"
    for argv in ([str(spacegate)], [sys.executable, "-m", "webhook"]):
        out = subprocess.run(
            [*argv, "check", "-f", MANIFESTS, "--config", DEMO],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=False,
        )
        assert out.returncode == 1, out.stderr
        assert "2 denied" in out.stdout
