"""Config file watching: valid changes apply, invalid ones keep the old config and say why."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from policy.config import Config, load_config
from webhook.live.config_watch import ConfigWatcher

ENFORCE = "policy: {mode: enforce}\n"
WARN = "policy: {mode: warn}\n"
BROKEN = "policy: {mode: enforce}\nregistries:\n  - {name: h, type: nexus, url: 'https://h'}\n"


class Applied:
    """Collects the configs handed to the change callback."""

    def __init__(self) -> None:
        self.configs: list[Config] = []

    async def __call__(self, config: Config) -> None:
        self.configs.append(config)


def configmap_mount(folder: Path, text: str, generation: int) -> Path:
    """Write ``text`` the way the kubelet does: a new data folder, then swap ``..data``."""
    data_dir = folder / f"..2024_{generation:04d}"
    data_dir.mkdir()
    (data_dir / "config.yaml").write_text(text)
    tmp_link = folder / "..data_tmp"
    tmp_link.symlink_to(data_dir.name)
    os.replace(tmp_link, folder / "..data")
    visible = folder / "config.yaml"
    if not visible.is_symlink():
        visible.symlink_to("..data/config.yaml")
    return visible


def test_an_unchanged_file_is_not_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(ENFORCE)
    applied = Applied()
    watcher = ConfigWatcher(str(path), applied, initial_text=ENFORCE)
    assert not asyncio.run(watcher.check())
    path.write_text(ENFORCE)  # rewritten, same content: nothing to do
    assert not asyncio.run(watcher.check())
    assert applied.configs == []


def test_a_valid_change_is_applied_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(ENFORCE)
    applied = Applied()
    watcher = ConfigWatcher(str(path), applied)
    path.write_text(WARN)
    assert asyncio.run(watcher.check())
    assert [c.policy.mode for c in applied.configs] == ["warn"]
    assert not asyncio.run(watcher.check())  # applied once, not on every poll


def test_a_configmap_symlink_swap_is_seen(tmp_path: Path) -> None:
    visible = configmap_mount(tmp_path, ENFORCE, 1)
    applied = Applied()
    watcher = ConfigWatcher(str(visible), applied)
    configmap_mount(tmp_path, WARN, 2)
    assert asyncio.run(watcher.check())
    assert applied.configs[-1].policy.mode == "warn"


def test_an_invalid_change_keeps_the_old_config_and_logs_the_key_path_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(ENFORCE)
    applied = Applied()
    watcher = ConfigWatcher(str(path), applied)
    path.write_text(BROKEN)
    with caplog.at_level(logging.WARNING, logger="webhook.live.config_watch"):
        assert not asyncio.run(watcher.check())
        assert not asyncio.run(watcher.check())
    assert applied.configs == []
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "keeping the current config" in messages[0]
    assert "registries[0].type" in messages[0]
    assert str(path) in messages[0]

    path.write_text(WARN)  # fixed: applied
    assert asyncio.run(watcher.check())
    assert applied.configs[-1].policy.mode == "warn"


def test_a_reload_that_turns_provisioning_on_unguarded_is_refused_and_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A running spacegate never starts handing out credentials without the guard."""
    path = tmp_path / "config.yaml"
    path.write_text(ENFORCE)
    applied = Applied()
    watcher = ConfigWatcher(str(path), applied)
    path.write_text(ENFORCE + "pullSecrets: {provision: true}\n")

    with caplog.at_level(logging.WARNING, logger="webhook.live.config_watch"):
        assert not asyncio.run(watcher.check())

    assert applied.configs == []
    assert "pullSecrets.provision: requires policy.namespaceGuard.enabled: true" in caplog.text


def test_a_file_that_disappears_for_a_moment_keeps_the_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(ENFORCE)
    applied = Applied()
    watcher = ConfigWatcher(str(path), applied)
    path.unlink()
    with caplog.at_level(logging.WARNING, logger="webhook.live.config_watch"):
        assert not asyncio.run(watcher.check())
        assert not asyncio.run(watcher.check())
    assert len(caplog.records) == 1
    path.write_text(ENFORCE)
    assert not asyncio.run(watcher.check())  # same content as before: nothing to apply
    assert applied.configs == []


def test_a_failing_change_callback_does_not_stop_the_watch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(ENFORCE)

    async def explode(config: Config) -> None:
        raise RuntimeError("boom")

    watcher = ConfigWatcher(str(path), explode)
    path.write_text(WARN)
    with caplog.at_level(logging.ERROR, logger="webhook.live.config_watch"):
        assert not asyncio.run(watcher.check())
    assert any("applying the new config" in r.getMessage() for r in caplog.records)


def test_the_background_watch_polls_on_its_interval(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(ENFORCE)
    applied = Applied()

    async def scenario() -> None:
        async with ConfigWatcher(str(path), applied, interval=0.01):
            path.write_text(WARN)
            for _ in range(300):
                if applied.configs:
                    break
                await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert [c.policy.mode for c in applied.configs] == ["warn"]


def test_an_edit_made_before_the_watcher_started_is_still_applied(tmp_path: Path) -> None:

    running = load_config(ENFORCE)
    path = tmp_path / "config.yaml"
    path.write_text(WARN)  # edited after serve loaded ENFORCE, before the watcher began
    applied = Applied()
    watcher = ConfigWatcher(str(path), applied, initial_config=running)
    assert asyncio.run(watcher.check())
    assert [c.policy.mode for c in applied.configs] == ["warn"]


def test_the_running_config_is_not_applied_again_at_the_first_poll(tmp_path: Path) -> None:

    path = tmp_path / "config.yaml"
    path.write_text(ENFORCE)
    applied = Applied()
    watcher = ConfigWatcher(str(path), applied, initial_config=load_config(ENFORCE))
    assert not asyncio.run(watcher.check())
    assert applied.configs == []
