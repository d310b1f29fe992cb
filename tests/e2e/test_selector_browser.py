"""The image selector page in a real browser (headless Chromium), against ``spacegate serve``
on the real control plane, with real ServiceAccount tokens.

A developer of a namespace bound to team-a signs in with a token, picks the namespace, the
private space, a repository and a tag, and copies the image reference; the Deployment YAML
the page shows is accepted by the apiserver with spacegate's webhooks in place (server-side
dry run). A developer of another workspace never gets team-a's names — not in the page and
not in any response the browser received. A token without the role sees the apiserver's
refusal on the page. ``SPACEGATE_SCREENSHOT=path.png`` saves the first test's page (the README
screenshot, ``docs/images/selector.png``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.browser import browser_unavailable, chromium, response_bodies
from tests.support.controlplane.plane import ControlPlane
from tests.support.selector_world import HARBOR_HOST, TEAM_B_SECRET, SelectorWorld, selector_world

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WAIT = 30


@pytest.fixture(scope="module")
def world(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SelectorWorld]:
    with selector_world(control_plane, tmp_path_factory.mktemp("selector-browser")) as built:
        yield built


@pytest.fixture
def browser(world: SelectorWorld) -> Iterator[Any]:
    reason = browser_unavailable()
    if reason:
        pytest.fail(reason, pytrace=False)
    with chromium(world.spacegate.tls.cert) as driver:
        yield driver


def wait_for(driver: Any, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT).until(condition)


def sign_in(driver: Any, world: SelectorWorld, who: str, namespace: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(world.spacegate.selector_url + "/")
    wait_for(driver, lambda d: d.find_element(By.ID, "token").is_displayed())
    driver.find_element(By.ID, "token").send_keys(world.tokens[who])
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
    field = wait_for(driver, lambda d: d.find_element(By.ID, "namespace"))
    field.send_keys(namespace)
    driver.find_element(By.CSS_SELECTOR, "#ns-form button").click()


def choose(driver: Any, list_id: str, text: str) -> None:
    """Click the entry of list ``list_id`` whose title is ``text`` (by keyboard: Enter)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def entry(d: Any) -> Any:
        for button in d.find_elements(By.CSS_SELECTOR, f"#{list_id} button"):
            spans = button.find_elements(By.TAG_NAME, "span")
            if spans and spans[0].text == text:
                return button
        return None

    button = wait_for(driver, entry)
    button.send_keys(Keys.ENTER)


def test_a_developer_finds_and_copies_a_private_image_and_its_yaml_is_admitted(
    browser: Any, world: SelectorWorld, control_plane: ControlPlane, webhooks: None
) -> None:
    from selenium.webdriver.common.by import By

    browser.execute_cdp_cmd(
        "Browser.grantPermissions",
        {
            "origin": world.spacegate.selector_url,
            "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"],
        },
    )
    sign_in(browser, world, "dev-a", world.namespace_a)
    choose(browser, "spaces", "harbor / team-a")
    choose(browser, "repositories", "team-a/web")
    choose(browser, "tags", "2.0")
    reference = f"{HARBOR_HOST}/team-a/web:2.0"
    wait_for(browser, lambda d: d.find_element(By.ID, "ref-tag").text == reference)
    digest = world.harbor.digest_of("team-a/web", "2.0")
    assert browser.find_element(By.ID, "ref-digest").text == f"{HARBOR_HOST}/team-a/web@{digest}"
    assert browser.find_element(By.ID, "kubectl").text == (
        f"kubectl create deployment web --image={reference} -n {world.namespace_a}"
    )
    browser.find_element(By.ID, "copy-tag").click()
    wait_for(browser, lambda d: "Copied" in d.find_element(By.ID, "copied").text)
    copied = browser.execute_async_script(
        "navigator.clipboard.readText().then(arguments[0], () => arguments[0](null));"
    )
    assert copied == reference

    shot = os.environ.get("SPACEGATE_SCREENSHOT")
    if shot:
        Path(shot).parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(shot)

    manifest = yaml.safe_load(browser.find_element(By.ID, "yaml").text)
    spec = manifest["spec"]["template"]["spec"]
    assert spec["imagePullSecrets"] == [{"name": "registry-secret"}]
    assert spec["containers"][0]["image"] == f"{HARBOR_HOST}/team-a/web@{digest}"
    with control_plane.http_client() as http:
        answer = http.post(
            f"/apis/apps/v1/namespaces/{world.namespace_a}/deployments",
            params={"dryRun": "All"},
            json=manifest,
        )
    assert answer.status_code == 201, answer.text  # spacegate's webhooks admitted it


def test_another_workspace_never_receives_team_a_names(browser: Any, world: SelectorWorld) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, world, "dev-b", world.namespace_b)
    choose(browser, "spaces", "harbor / team-b")
    choose(browser, "repositories", f"team-b/{TEAM_B_SECRET}")
    choose(browser, "tags", "9.9")
    wait_for(browser, lambda d: d.find_element(By.ID, "ref-tag").text.endswith(":9.9"))
    choose(browser, "spaces", "harbor / library")
    choose(browser, "repositories", "library/nginx")
    choose(browser, "tags", "1.27")  # its tags arrived: every request of the visit answered
    assert "team-a" not in browser.page_source
    responses = response_bodies(browser)
    assert len(responses) >= 5 and all(status == 200 for _, status, _ in responses)
    for url, _, body in responses:
        assert "team-a" not in url and "team-a" not in body, url


def test_a_token_without_the_role_sees_the_403_message(browser: Any, world: SelectorWorld) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, world, "nobody", world.namespace_a)
    status = wait_for(
        browser,
        lambda d: (t := d.find_element(By.ID, "status").text).startswith("Not allowed") and t,
    )
    assert (
        f'User "system:serviceaccount:{world.namespace_a}:nobody" cannot list resource "images"'
        in status
    )
    assert "error" in browser.find_element(By.ID, "status").get_attribute("class")
    assert browser.find_elements(By.CSS_SELECTOR, "#spaces button") == []
