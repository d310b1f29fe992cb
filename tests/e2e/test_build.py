"""How the control-plane binaries are pinned, cached and (not) built; no Go build runs here.

These guard the cheap paths around a minutes-long build: a warm cache must not need Go at
all, a stale one must not be trusted, and a missing or old Go must say what to do.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.controlplane import build


def _fake_go(directory: Path, version: str) -> Path:
    """A ``go`` that only answers ``go env GOVERSION``."""
    go = directory / "go"
    go.write_text(f'#!/bin/sh\n[ "$1 $2" = "env GOVERSION" ] && echo {version}\n')
    go.chmod(0o755)
    return go


def _fill_cache(root: Path, *, inputs: str) -> Path:
    pins = build.read_pins()
    directory = root / pins.key
    directory.mkdir(parents=True)
    for name in build.BINARIES:
        (directory / name).write_text("#!/bin/sh\n")
        (directory / name).chmod(0o755)
    (directory / build.STAMP).write_text(json.dumps({"inputs": inputs}))
    return directory


def _no_go(*args: object, **kwargs: object) -> Path:
    raise build.GoNotFoundError("no go in this test")


def test_every_staging_module_is_replaced_with_the_tag_matching_the_kubernetes_pin() -> None:
    pins = build.read_pins()
    go_mod = (build.KUBE_MODULE / "go.mod").read_text()
    replaces = dict(re.findall(r"^\s*(?:replace\s+)?(k8s\.io/\S+) => \1 (v\S+)$", go_mod, re.M))
    assert re.fullmatch(r"v1\.37\.\d+", pins.kubernetes)
    staging_tag = "v0." + pins.kubernetes.removeprefix("v1.")
    assert len(replaces) >= 30  # api, apimachinery, apiserver, client-go, ... streaming
    assert set(replaces.values()) == {staging_tag}
    assert {"k8s.io/apiserver", "k8s.io/client-go", "k8s.io/streaming"} <= set(replaces)


def test_etcd_is_pinned_to_a_3_6_release_in_its_own_module() -> None:
    pins = build.read_pins()
    assert re.fullmatch(r"v3\.6\.\d+", pins.etcd)
    # Kubernetes 1.37 requires etcd 3.7 libraries; sharing a module would pull the server up.
    assert "k8s.io/kubernetes" not in (build.ETCD_MODULE / "go.mod").read_text()


def test_the_cache_directory_follows_the_overrides(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = build.read_pins().key
    monkeypatch.delenv("SPACEGATE_CONTROLPLANE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert build.binaries_dir() == tmp_path / "xdg" / "spacegate" / "controlplane" / key
    monkeypatch.setenv("SPACEGATE_CONTROLPLANE_CACHE", str(tmp_path / "mine"))
    assert build.binaries_dir() == tmp_path / "mine" / key


def test_a_complete_cache_is_used_without_go(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SPACEGATE_CONTROLPLANE_CACHE", str(tmp_path))
    directory = _fill_cache(tmp_path, inputs=build._inputs_digest(build.read_pins()))
    monkeypatch.setattr(build, "find_go", _no_go)
    assert build.ensure_binaries(progress=lambda _: None) == directory


def test_a_cache_built_from_other_go_mod_files_is_rebuilt_not_trusted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SPACEGATE_CONTROLPLANE_CACHE", str(tmp_path))
    _fill_cache(tmp_path, inputs="from-older-pins")
    monkeypatch.setattr(build, "find_go", _no_go)
    with pytest.raises(build.GoNotFoundError):
        build.ensure_binaries(progress=lambda _: None)


def test_a_cache_missing_one_binary_is_completed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SPACEGATE_CONTROLPLANE_CACHE", str(tmp_path))
    digest = build._inputs_digest(build.read_pins())
    directory = _fill_cache(tmp_path, inputs=digest)
    (directory / build.ETCD).unlink()
    assert build._missing_binaries(directory, digest) == {build.ETCD}
    monkeypatch.setattr(build, "find_go", _no_go)
    with pytest.raises(build.GoNotFoundError):
        build.ensure_binaries(progress=lambda _: None)


def test_a_missing_go_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SPACEGATE_GO", raising=False)
    with pytest.raises(build.GoNotFoundError) as caught:
        build.find_go(search_path=str(tmp_path), fallbacks=[tmp_path / "nowhere" / "go"])
    message = str(caught.value)
    assert "no `go` command" in message
    assert "https://go.dev/dl/" in message
    assert "SPACEGATE_SKIP_E2E=1" in message


def test_go_is_found_on_the_search_path_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SPACEGATE_GO", raising=False)
    go = _fake_go(tmp_path, "go1.26.0")
    assert build.find_go(search_path=str(tmp_path), fallbacks=[]) == go


def test_spacegate_go_chooses_the_go_command_and_a_wrong_one_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    go = _fake_go(tmp_path, "go1.26.0")
    monkeypatch.setenv("SPACEGATE_GO", str(go))
    assert build.find_go(search_path="", fallbacks=[]) == go
    monkeypatch.setenv("SPACEGATE_GO", str(tmp_path / "missing"))
    with pytest.raises(build.GoNotFoundError, match=r"SPACEGATE_GO=.*missing is not an executable"):
        build.find_go()


def test_an_old_go_is_refused_with_the_version_it_needs(tmp_path: Path) -> None:
    go = _fake_go(tmp_path, "go1.22.5")
    with pytest.raises(build.GoTooOldError) as caught:
        build.check_go(go, "1.26.0")
    assert "go1.22.5" in str(caught.value)
    assert "needs go 1.26.0 or newer" in str(caught.value)


@pytest.mark.parametrize("version", ["go1.26.0", "go1.26.8", "go1.27rc1", "go2.0"])
def test_a_new_enough_go_is_accepted(tmp_path: Path, version: str) -> None:
    assert build.check_go(_fake_go(tmp_path, version), "1.26.0") == version


def test_the_toolchain_is_never_switched_behind_our_back(tmp_path: Path) -> None:
    """An old go with GOTOOLCHAIN=auto would fetch a newer one instead of failing clearly."""
    go = tmp_path / "go"
    go.write_text('#!/bin/sh\necho "go$GOTOOLCHAIN"\n')
    go.chmod(0o755)
    with pytest.raises(build.GoTooOldError) as caught:
        build.check_go(go, "1.26.0")
    assert "golocal" in str(caught.value)
