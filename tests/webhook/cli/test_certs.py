"""``spacegate certs generate``: what it writes, what it prints, and how it fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from certs.inspect import verify_server_certificate
from webhook.cli.certs import generate_command


def test_generate_writes_the_files_and_says_what_to_do_with_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "certs"
    code = generate_command("spacegate", "spacegate-system", str(out), ["hook.example.com"], [])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'ca.crt'}" in printed
    assert f"wrote {out / 'tls.crt'} (serving certificate, ECDSA P-256, expires " in printed
    assert f"wrote {out / 'tls.key'} (private key, mode 0600)" in printed
    assert "spacegate.spacegate-system.svc," in printed
    assert "hook.example.com" in printed
    assert f"kubectl -n spacegate-system create secret tls spacegate-tls --cert={out}" in printed
    assert "PRIVATE KEY" not in printed
    cert, ca = (out / "tls.crt").read_bytes(), (out / "ca.crt").read_bytes()
    verify_server_certificate(cert, ca, "spacegate.spacegate-system.svc")
    verify_server_certificate(cert, ca, "hook.example.com")


def test_extra_ips_are_included(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert generate_command("spacegate", "default", str(tmp_path), [], ["10.0.0.7"]) == 0
    assert "10.0.0.7" in capsys.readouterr().out
    verify_server_certificate(
        (tmp_path / "tls.crt").read_bytes(), (tmp_path / "ca.crt").read_bytes(), "10.0.0.7"
    )


@pytest.mark.parametrize(
    ("service", "namespace", "extra_dns", "extra_ips", "message"),
    [
        ("Spacegate", "ns", [], [], "service name 'Spacegate' is not a valid DNS-1035 label"),
        ("spacegate", "team_a", [], [], "namespace 'team_a' is not a valid DNS-1123 label"),
        ("spacegate", "ns", ["bad_name"], [], "DNS name 'bad_name' is invalid"),
        ("spacegate", "ns", [], ["300.1.1.1"], "IP address '300.1.1.1' is not an IPv4 or IPv6"),
    ],
)
def test_bad_input_exits_2_naming_the_value_and_writes_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    service: str,
    namespace: str,
    extra_dns: list[str],
    extra_ips: list[str],
    message: str,
) -> None:
    out = tmp_path / "certs"
    assert generate_command(service, namespace, str(out), extra_dns, extra_ips) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("spacegate certs generate: ")
    assert message in captured.err
    assert not out.exists()


def test_an_unwritable_output_directory_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert generate_command("spacegate", "ns", str(blocker / "certs"), [], []) == 1
    assert f"cannot write {blocker / 'certs'}" in capsys.readouterr().err
