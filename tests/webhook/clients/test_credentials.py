"""Registry credentials: read from their files on every use, never shown.

The files are what a mounted Kubernetes Secret gives (with a trailing newline, as ``echo``
or an editor leaves it); errors name the file, never its content.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from policy.config import Credentials, Registry
from webhook.clients.credentials import BasicCredentials, load_credentials
from webhook.clients.errors import SourceError


def registry(
    tmp_path: Path, user: str | None = "robot", password: str | None = "s3cret"
) -> Registry:
    files: dict[str, str | None] = {"username_file": None, "password_file": None}
    if user is not None:
        (tmp_path / "user").write_text(user + "\n")
        files["username_file"] = str(tmp_path / "user")
    if password is not None:
        (tmp_path / "pass").write_text(password + "\n")
        files["password_file"] = str(tmp_path / "pass")
    return Registry(
        name="h",
        type="harbor",
        url="https://h.example.com",
        hosts=("h.example.com",),
        credentials=Credentials(**files),
    )


def test_credentials_are_read_from_their_files_without_the_trailing_newline(
    tmp_path: Path,
) -> None:
    creds = load_credentials(registry(tmp_path), "harbor 'h'")
    assert creds == BasicCredentials("robot", "s3cret")
    assert "s3cret" not in repr(creds)
    assert creds is not None and creds.header == "Basic cm9ib3Q6czNjcmV0"


def test_a_registry_without_credentials_is_anonymous(tmp_path: Path) -> None:
    plain = Registry(name="h", type="harbor", url="https://h", hosts=("h",))
    assert load_credentials(plain, "x") is None


def test_half_a_credential_or_an_unreadable_file_is_an_error_naming_the_file(
    tmp_path: Path,
) -> None:
    with pytest.raises(SourceError, match=r"credentials\.passwordFile is missing"):
        load_credentials(registry(tmp_path, password=None), "harbor 'h'")
    broken = registry(tmp_path)
    Path(str(broken.credentials and broken.credentials.password_file)).unlink()
    with pytest.raises(SourceError, match=r"cannot read credentials.passwordFile .*/pass"):
        load_credentials(broken, "harbor 'h'")
