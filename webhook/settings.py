"""Loading the config file (or the embedded demo) from disk.

``policy.config`` parses text; this module owns the file system side: which file, how it
is read, and the embedded demo config that ``spacegate serve`` and the offline commands use
when no ``--config`` is given.
"""

from __future__ import annotations

from pathlib import Path

from policy.config import Config, ConfigError, load_config

EMBEDDED_DEMO = "embedded demo config (examples/demo.yaml)"
# Packaged beside this module (a symlink to examples/demo.yaml in the source tree).
DEMO_CONFIG = Path(__file__).with_name("demo.yaml")


def demo_config_text() -> str:
    """The packaged copy of ``examples/demo.yaml``."""
    return DEMO_CONFIG.read_text(encoding="utf-8")


def read_config(path: str | None) -> Config:
    """The config at ``path``, or the embedded demo when ``path`` is None."""
    if path is None:
        return load_config(demo_config_text(), EMBEDDED_DEMO)
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return load_config(text, path)
