"""A real browser for the selector page: Debian's headless Chromium driven by Selenium.

Nothing is downloaded: the driver is ``/usr/bin/chromedriver`` (Debian ``chromium-driver``)
given explicitly, Selenium Manager is kept offline (``SE_OFFLINE``), and Chromium runs
headless in a fresh profile directory with background networking, component updates and
sync off. The page's certificate is trusted by its public key only
(``--ignore-certificate-errors-spki-list``), so TLS stays on and no other certificate error
is ignored. Every response the page receives is recorded through the DevTools protocol
(``Network`` events in the performance log), so a test can show that something was in no
response at all, not only absent from the DOM.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def browser_unavailable() -> str | None:
    """Why the browser cannot run here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} not found (Debian package {package}; `make test` installs it)"
    return None


def spki_hash(cert_pem: bytes) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of a certificate, as Chromium's flag wants it."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@contextlib.contextmanager
def chromium(trusted_cert: Path, window: tuple[int, int] = (1440, 900)) -> Iterator[Any]:
    """A headless Chromium WebDriver trusting ``trusted_cert``'s key, closed afterwards."""
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="spacegate-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--window-size={window[0]},{window[1]}",
        f"--ignore-certificate-errors-spki-list={spki_hash(trusted_cert.read_bytes())}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def response_bodies(driver: Any, url_part: str = "/api/") -> list[tuple[str, int, str]]:
    """(url, status, body) of every response so far whose URL contains ``url_part``."""
    found = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") != "Network.responseReceived":
            continue
        response = message["params"]["response"]
        if url_part not in response["url"]:
            continue
        # Raises when the browser no longer holds a body: a test must not pass unread.
        body = driver.execute_cdp_cmd(
            "Network.getResponseBody", {"requestId": message["params"]["requestId"]}
        )["body"]
        found.append((response["url"], int(response["status"]), body))
    return found
