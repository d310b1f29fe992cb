"""The Docker Registry source: catalog spaces, basic auth and the bearer-token flow.

Basic auth, catalog pagination and error bodies are tested against the real
``docker-registry`` 2.8.2 binary (:class:`tests.fakes.registry.RealRegistry`); the bearer
flow against :class:`tests.fakes.registry.TokenRegistryFake`, since a real token server
would need JWT signing certificates the registry trusts.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from policy.config import Registry
from tests.fakes.registry import RealRegistry, TokenRegistryFake
from tests.webhook.live.sources.conftest import FAST, RegistryFactory, fetch, fetch_error
from webhook.clients.errors import SourceError
from webhook.live.sources.docker_registry import DockerRegistrySource, parse_challenge, space_of
from webhook.live.sources.factory import make_source
from webhook.live.sources.harbor import HarborSource

SECRET = "Sup3r$ecret:PASSWORD-marker"
StartToken = Callable[..., TokenRegistryFake]


def fetch_recording(
    registry: Registry, **options: Any
) -> tuple[dict[str, bool] | SourceError, list[httpx.Request]]:
    """Fetch once through a client that records every request sent."""
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    async def once() -> dict[str, bool] | SourceError:
        async with httpx.AsyncClient(event_hooks={"request": [record]}) as client:
            source = DockerRegistrySource(registry, client=client, **{**FAST, **options})
            try:
                return await source.fetch()
            except SourceError as exc:
                return exc
            finally:
                await source.aclose()

    return asyncio.run(once()), sent


def described(requests: list[httpx.Request]) -> list[str]:
    """``"GET /v2/_catalog?n=1000 [basic]"`` per request: what the registry was asked."""
    lines = []
    for request in requests:
        auth = request.headers.get("authorization", "")
        scheme = auth.split(" ", 1)[0].lower() or "anonymous"
        query = f"?{request.url.query.decode()}" if request.url.query else ""
        lines.append(f"{request.method} {request.url.path}{query} [{scheme}]")
    return lines


# --------------------------------------------------------------------------- spaces


@pytest.mark.parametrize(
    ("repository", "space"),
    [("team-a/api", "team-a"), ("team-a/tools/lint", "team-a"), ("alpine", "alpine")],
)
def test_the_space_of_a_repository_is_its_first_path_component(repository: str, space: str) -> None:
    assert space_of(repository) == space


def test_spaces_of_the_real_registry_are_first_path_components_all_public(
    real_registry: RealRegistry, registry_config: RegistryFactory
) -> None:
    for repo in ("team-a/api", "team-a/web", "team-b/tools/db", "alpine"):
        real_registry.push_image(repo, "v1")
    registry = registry_config(
        real_registry.url, "docker-registry", real_registry.username, real_registry.password
    )

    spaces = fetch(DockerRegistrySource(registry, **FAST))

    assert spaces == {"team-a": True, "team-b": True, "alpine": True}


def test_a_catalog_of_2500_repositories_is_read_in_three_pages_of_1000(
    real_registry: RealRegistry, registry_config: RegistryFactory
) -> None:
    real_registry.prefill((f"space-{i % 25:02d}/app-{i}" for i in range(2500)), pullable=False)
    registry = registry_config(
        real_registry.url, "docker-registry", real_registry.username, real_registry.password
    )

    spaces, sent = fetch_recording(registry)

    assert spaces == {f"space-{i:02d}": True for i in range(25)}
    catalog = [r for r in sent if r.url.path == "/v2/_catalog"]
    assert [r.url.params.get("n") for r in catalog] == ["1000"] * 3
    assert catalog[1].url.params["last"] < catalog[2].url.params["last"]


def test_a_prefilled_repository_can_be_pulled_like_a_pushed_one(
    real_registry: RealRegistry,
) -> None:
    real_registry.prefill(["team-a/prefilled"], tag="v2")
    pushed = real_registry.push_image("team-a/pushed", "v2")

    tags = real_registry.client.get("/v2/team-a/prefilled/tags/list").json()
    manifest = real_registry.client.head(
        "/v2/team-a/prefilled/manifests/v2",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )

    assert tags == {"name": "team-a/prefilled", "tags": ["v2"]}
    assert manifest.headers["docker-content-digest"] == pushed


def test_an_empty_registry_has_no_spaces(
    real_registry: RealRegistry, registry_config: RegistryFactory
) -> None:
    registry = registry_config(
        real_registry.url, "docker-registry", real_registry.username, real_registry.password
    )

    assert fetch(DockerRegistrySource(registry, **FAST)) == {}


# --------------------------------------------------------------------------- basic auth


def test_wrong_credentials_fail_with_the_registrys_401_without_retrying(
    real_registry: RealRegistry, registry_config: RegistryFactory
) -> None:
    registry = registry_config(
        real_registry.url, "docker-registry", real_registry.username, SECRET, name="local"
    )

    error, sent = fetch_recording(registry)

    assert str(error) == "docker-registry 'local': 401 UNAUTHORIZED: authentication required"
    assert described(sent) == ["GET /v2/ [anonymous]", "GET /v2/ [basic]"]


def test_a_protected_registry_without_configured_credentials_says_what_is_missing(
    real_registry: RealRegistry, registry_config: RegistryFactory
) -> None:
    registry = registry_config(real_registry.url, "docker-registry")

    error = fetch_error(DockerRegistrySource(registry, **FAST))

    assert str(error) == (
        "docker-registry 'main': 401 UNAUTHORIZED: authentication required; the registry "
        "requires credentials (set credentials.usernameFile and passwordFile)"
    )


def test_basic_auth_is_answered_after_the_challenge_and_reused_for_every_page(
    real_registry: RealRegistry, registry_config: RegistryFactory
) -> None:
    real_registry.prefill((f"s{i}/r" for i in range(5)), pullable=False)
    registry = registry_config(
        real_registry.url, "docker-registry", real_registry.username, real_registry.password
    )

    spaces, sent = fetch_recording(registry, page_size=2)

    assert isinstance(spaces, dict) and len(spaces) == 5
    assert described(sent) == [
        "GET /v2/ [anonymous]",
        "GET /v2/ [basic]",
        "GET /v2/_catalog?n=2 [basic]",
        "GET /v2/_catalog?last=s1%2Fr&n=2 [basic]",
        "GET /v2/_catalog?last=s3%2Fr&n=2 [basic]",
    ]


# --------------------------------------------------------------------------- bearer tokens


def test_the_bearer_flow_gets_a_catalog_token_with_basic_auth_at_the_realm(
    token_registry: StartToken, registry_config: RegistryFactory
) -> None:
    fake = token_registry(users={"ci": SECRET})
    fake.set_repositories(["team-a/api", "team-b/web", "busybox"])
    registry = registry_config(fake.url, "docker-registry", "ci", SECRET)

    spaces, sent = fetch_recording(registry)

    assert spaces == {"team-a": True, "team-b": True, "busybox": True}
    assert described(sent) == [
        "GET /v2/ [anonymous]",
        "GET /token?service=fake-registry&scope=registry%3Acatalog%3A%2A [basic]",
        "GET /v2/ [bearer]",
        "GET /v2/_catalog?n=1000 [bearer]",
    ]


@pytest.mark.parametrize("field", ["token", "access_token"])
def test_either_token_field_of_the_realms_answer_is_accepted(
    field: str, token_registry: StartToken, registry_config: RegistryFactory
) -> None:
    fake = token_registry(users={"ci": SECRET}, token_field=field)
    fake.set_repositories(["team-a/api"])
    registry = registry_config(fake.url, "docker-registry", "ci", SECRET)

    assert fetch(DockerRegistrySource(registry, **FAST)) == {"team-a": True}


def test_an_anonymous_token_is_enough_when_the_realm_grants_the_catalog(
    token_registry: StartToken, registry_config: RegistryFactory
) -> None:
    fake = token_registry(anonymous_catalog=True)
    fake.set_repositories(["library/nginx"])

    spaces = fetch(DockerRegistrySource(registry_config(fake.url, "docker-registry"), **FAST))

    assert spaces == {"library": True}


def test_a_token_without_catalog_access_is_reported_as_such(
    token_registry: StartToken, registry_config: RegistryFactory
) -> None:
    fake = token_registry(users={"puller": SECRET}, catalog_users=[])
    fake.set_repositories(["team-a/api"])
    registry = registry_config(fake.url, "docker-registry", "puller", SECRET)

    error, sent = fetch_recording(registry)

    assert str(error) == (
        "docker-registry 'main': 401 UNAUTHORIZED: authentication required; the token does "
        "not grant registry:catalog:* (the account needs catalog access)"
    )
    assert [r.url.path for r in sent].count("/token") == 1


def test_a_wrong_password_at_the_token_realm_is_a_401_naming_the_realm(
    token_registry: StartToken, registry_config: RegistryFactory
) -> None:
    fake = token_registry(users={"ci": "right"})
    registry = registry_config(fake.url, "docker-registry", "ci", SECRET)

    error, sent = fetch_recording(registry)

    assert str(error) == (
        "docker-registry 'main': 401 UNAUTHORIZED: authentication required on token request "
        "to 127.0.0.1/token (scope registry:catalog:*)"
    )
    assert len(sent) == 2


def test_a_page_size_above_the_registrys_maximum_falls_back_to_its_default(
    token_registry: StartToken, registry_config: RegistryFactory
) -> None:
    fake = token_registry(users={"ci": SECRET}, max_entries=50)
    fake.set_repositories(f"s{i:03d}/app" for i in range(120))
    registry = registry_config(fake.url, "docker-registry", "ci", SECRET)

    spaces, sent = fetch_recording(registry)

    assert isinstance(spaces, dict) and len(spaces) == 120
    catalog = [r.url.query.decode() for r in sent if r.url.path == "/v2/_catalog"]
    assert catalog == ["n=1000", "", "last=s049%2Fapp&n=50", "last=s099%2Fapp&n=50"]


# --------------------------------------------------------------------------- faults


def test_server_errors_on_the_catalog_are_retried(
    token_registry: StartToken, registry_config: RegistryFactory
) -> None:
    fake = token_registry(users={"ci": SECRET})
    fake.set_repositories(["team-a/api"])
    fake.faults.pass_next(2).fail_next(2, 503)  # /v2/ twice, then the catalog fails twice
    registry = registry_config(fake.url, "docker-registry", "ci", SECRET)

    spaces, sent = fetch_recording(registry)

    assert spaces == {"team-a": True}
    assert [r.url.path for r in sent].count("/v2/_catalog") == 3


def test_a_429_on_the_catalog_waits_for_retry_after(
    token_registry: StartToken, registry_config: RegistryFactory
) -> None:
    fake = token_registry(users={"ci": SECRET})
    fake.set_repositories(["team-a/api"])
    fake.faults.pass_next(2).fail_next(1, 429, retry_after="3")
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    registry = registry_config(fake.url, "docker-registry", "ci", SECRET)
    spaces, _ = fetch_recording(registry, sleep=sleep)

    assert spaces == {"team-a": True}
    assert waits == [3.0]


def test_a_catalog_slower_than_the_read_timeout_fails_after_the_retries(
    token_registry: StartToken, registry_config: RegistryFactory
) -> None:
    fake = token_registry(users={"ci": SECRET})
    fake.faults.pass_next(2).delay_next(3, seconds=0.4)
    registry = registry_config(fake.url, "docker-registry", "ci", SECRET)

    error, _ = fetch_recording(registry, timeout=httpx.Timeout(2.0, read=0.1), retries=2)

    assert str(error) == (
        "docker-registry 'main': GET /v2/_catalog?n=1000 (page 1): read timeout "
        "(gave up after 3 attempts)"
    )


def test_truncated_catalog_json_is_an_error_naming_the_path_and_page(
    token_registry: StartToken, registry_config: RegistryFactory
) -> None:
    fake = token_registry(users={"ci": SECRET})
    fake.set_repositories(f"s{i}/app" for i in range(30))
    fake.faults.pass_next(3).truncate_next(1)
    registry = registry_config(fake.url, "docker-registry", "ci", SECRET)

    error, _ = fetch_recording(registry, page_size=20)

    assert str(error).startswith(
        "docker-registry 'main': invalid JSON in the response to "
        "GET /v2/_catalog?last=s26%2Fapp&n=20 (page 2)"
    )


def test_a_dropped_connection_is_retried(
    token_registry: StartToken, registry_config: RegistryFactory
) -> None:
    fake = token_registry(users={"ci": SECRET})
    fake.set_repositories(["team-a/api"])
    fake.faults.pass_next(2).drop_next(1)
    registry = registry_config(fake.url, "docker-registry", "ci", SECRET)

    spaces, _ = fetch_recording(registry)

    assert spaces == {"team-a": True}


def test_a_refused_connection_fails_with_a_clear_message(
    registry_config: RegistryFactory,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    registry = registry_config(f"http://127.0.0.1:{port}", "docker-registry")

    error = fetch_error(DockerRegistrySource(registry, retries=1, backoff=0.001))

    assert str(error).startswith("docker-registry 'main': GET /v2/: connection failed: ")
    assert str(error).endswith("(gave up after 2 attempts)")


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    "fault",
    ["wrong password at the realm", "catalog 500s", "truncated catalog", "slow catalog"],
)
def test_neither_password_nor_token_appears_in_errors_or_logs(
    fault: str,
    token_registry: StartToken,
    registry_config: RegistryFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    password = "other" if fault.startswith("wrong") else SECRET
    fake = token_registry(users={"ci": password})
    fake.set_repositories(["team-a/api"])
    if fault == "catalog 500s":
        fake.faults.pass_next(2).fail_next(5, 500)
    elif fault == "truncated catalog":
        fake.faults.pass_next(2).truncate_next(1)
    elif fault == "slow catalog":
        fake.faults.pass_next(2).delay_next(5, seconds=0.3)
    registry = registry_config(fake.url, "docker-registry", "ci", SECRET)

    with caplog.at_level(logging.DEBUG):
        error, _ = fetch_recording(registry, retries=2, timeout=httpx.Timeout(2.0, read=0.1))

    assert isinstance(error, SourceError)
    header = base64.b64encode(f"ci:{SECRET}".encode()).decode()
    for text in (str(error), repr(error), caplog.text):
        assert SECRET not in text
        assert header not in text
        for token in fake.tokens:
            assert token not in text


# --------------------------------------------------------------------------- challenges


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        ('Basic realm="basic-realm"', "basic", {"realm": "basic-realm"}),
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:samalba/my-app:pull,push"',
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:samalba/my-app:pull,push",
            },
        ),
        (
            'bearer realm="https://h/service/token", service="harbor-registry"',
            "bearer",
            {"realm": "https://h/service/token", "service": "harbor-registry"},
        ),
        (
            'Bearer realm="a\\"b",error=invalid_token',
            "bearer",
            {"realm": 'a"b', "error": "invalid_token"},
        ),
    ],
)
def test_www_authenticate_challenges_are_parsed_with_commas_inside_quotes(
    header: str, scheme: str, params: dict[str, str]
) -> None:
    challenge = parse_challenge(header)

    assert challenge is not None
    assert (challenge.scheme, challenge.params) == (scheme, params)


def test_a_plain_http_token_realm_is_refused_for_an_https_registry(
    registry_config: RegistryFactory,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.host == "registry.example.com"
        return httpx.Response(
            401, headers={"WWW-Authenticate": 'Bearer realm="http://auth.example.com/token"'}
        )

    registry = registry_config("https://registry.example.com", "docker-registry", "ci", SECRET)
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))

    error = fetch_error(DockerRegistrySource(registry, client=client, **FAST))

    assert "refusing a plain-http token realm for an https registry" in str(error)


# --------------------------------------------------------------------------- factory


def test_the_factory_builds_the_source_for_each_registry_type(
    registry_config: RegistryFactory, caplog: pytest.LogCaptureFixture
) -> None:
    harbor = make_source(registry_config("https://harbor.example.com", "harbor"))
    plain = make_source(registry_config("http://10.0.0.5:5000", "docker-registry", name="lab"))

    assert isinstance(harbor, HarborSource)
    assert isinstance(plain, DockerRegistrySource)
    assert (harbor.name, plain.name) == ("main", "lab")
    assert "registry 'lab': http://10.0.0.5:5000 is plain http" in caplog.text
    assert "harbor.example.com" not in caplog.text
    asyncio.run(harbor.aclose())
    asyncio.run(plain.aclose())
