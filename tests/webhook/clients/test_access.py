"""Bearer tokens reviewed by the apiserver: what is asked, what is cached and for how long.

The reviews are answered by a recorded stand-in here, so the caching rules can be driven by
a clock; the same reviews against the real kube-apiserver are in
``tests/e2e/test_metrics_auth.py`` and ``tests/e2e/test_selector.py``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import orjson
import pytest

from webhook.clients.access import (
    ALLOW_TTL,
    AUTHN_TTL,
    DENY_TTL,
    AccessReviewer,
    Identity,
    NonResource,
    Refusal,
    ResourceAccess,
)

LIST_IMAGES = ResourceAccess("list", "images", "spacegate.io", "team-a-dev")


def jwt(exp: float | None = None) -> str:
    claims: dict[str, Any] = {"sub": "system:serviceaccount:team-a-dev:dev"}
    if exp is not None:
        claims["exp"] = int(exp)
    payload = base64.urlsafe_b64encode(orjson.dumps(claims)).decode().rstrip("=")
    return f"eyJhbGciOiJSUzI1NiJ9.{payload}.c2lnbmF0dXJl"


class Apiserver:
    """Answers reviews like the apiserver would for a few known tokens and grants."""

    def __init__(self) -> None:
        self.tokens: dict[str, dict[str, Any]] = {}
        self.allowed: set[tuple[str, str]] = set()  # (user, namespace or path)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail = False
        self.delay = 0.0

    def user(self, token: str, name: str, audiences: list[str] | None = None) -> None:
        self.tokens[token] = {"username": name, "uid": "u-1", "groups": ["system:authenticated"]}
        if audiences is not None:
            self.tokens[token]["_audiences"] = audiences

    async def __call__(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((kind, body))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise OSError("connection refused")
        spec = body["spec"]
        if kind == "TokenReview":
            user = self.tokens.get(spec["token"])
            if user is None:
                return {"authenticated": False, "error": "invalid bearer token"}
            audiences = user.get("_audiences", ["https://kubernetes.default.svc"])
            wanted = spec.get("audiences") or ["https://kubernetes.default.svc"]
            if not set(audiences) & set(wanted):
                return {"authenticated": False, "error": "token audiences is invalid"}
            shown = {k: v for k, v in user.items() if not k.startswith("_")}
            return {
                "authenticated": True,
                "user": shown,
                "audiences": sorted(set(audiences) & set(wanted)),
            }
        where = spec.get("resourceAttributes", {}).get("namespace") or spec.get(
            "nonResourceAttributes", {}
        ).get("path")
        return {"allowed": (spec["user"], where) in self.allowed}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_no_token_is_refused_with_401_before_any_review() -> None:
    api = Apiserver()
    reviewer = AccessReviewer(api)
    for header in (None, "", "Basic YTpi", "Bearer ", "Bearer " + "x" * 20_000):
        answer = run(reviewer.check(header, LIST_IMAGES))
        assert isinstance(answer, Refusal) and answer.status == 401
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert api.calls == []


def test_an_allowed_identity_is_returned_and_both_reviews_carry_what_the_apiserver_needs() -> None:
    api = Apiserver()
    api.user("t1", "system:serviceaccount:team-a-dev:dev")
    api.allowed.add(("system:serviceaccount:team-a-dev:dev", "team-a-dev"))
    answer = run(AccessReviewer(api).check("Bearer t1", LIST_IMAGES))
    assert answer == Identity(
        "system:serviceaccount:team-a-dev:dev", "u-1", ("system:authenticated",), ()
    )
    (authn_kind, authn), (authz_kind, authz) = api.calls
    assert authn_kind == "TokenReview" and authn["spec"] == {"token": "t1"}
    assert authz_kind == "SubjectAccessReview"
    assert authz["spec"]["resourceAttributes"] == {
        "verb": "list",
        "group": "spacegate.io",
        "resource": "images",
        "namespace": "team-a-dev",
    }
    assert authz["spec"]["uid"] == "u-1" and authz["spec"]["groups"] == ["system:authenticated"]


def test_a_403_says_who_was_refused_what_like_the_apiserver() -> None:
    api = Apiserver()
    api.user("t1", "alice")
    answer = run(AccessReviewer(api).check("Bearer t1", LIST_IMAGES))
    assert isinstance(answer, Refusal) and answer.status == 403
    assert answer.message == (
        'forbidden: User "alice" cannot list resource "images" in API group "spacegate.io" in '
        'the namespace "team-a-dev"'
    )
    status = orjson.loads(answer.body)
    assert status["kind"] == "Status" and status["code"] == 403 and status["reason"] == "Forbidden"
    metrics = run(AccessReviewer(api).check("Bearer t1", NonResource("get", "/metrics")))
    assert isinstance(metrics, Refusal)
    assert 'User "alice" cannot get path "/metrics"' in metrics.message


def test_audiences_are_asked_for_and_a_token_for_another_audience_is_401() -> None:
    api = Apiserver()
    api.user("apiserver-token", "alice")
    api.user("spacegate-token", "alice", audiences=["spacegate"])
    api.allowed.add(("alice", "team-a-dev"))
    reviewer = AccessReviewer(api, audiences=["spacegate"])
    refused = run(reviewer.check("Bearer apiserver-token", LIST_IMAGES))
    assert isinstance(refused, Refusal) and refused.status == 401
    assert "audience spacegate" in refused.message
    assert isinstance(run(reviewer.check("Bearer spacegate-token", LIST_IMAGES)), Identity)
    assert api.calls[0][1]["spec"]["audiences"] == ["spacegate"]


def test_allowed_answers_are_cached_longer_than_denied_ones() -> None:
    api, clock = Apiserver(), Clock()
    api.user("t1", "alice")
    reviewer = AccessReviewer(api, clock=clock)

    def sars() -> int:
        return sum(kind == "SubjectAccessReview" for kind, _ in api.calls)

    assert isinstance(run(reviewer.check("Bearer t1", LIST_IMAGES)), Refusal)
    api.allowed.add(("alice", "team-a-dev"))  # a RoleBinding is created
    clock.now += DENY_TTL - 1
    assert isinstance(run(reviewer.check("Bearer t1", LIST_IMAGES)), Refusal)  # still denied
    assert sars() == 1
    clock.now += 2  # the denial expired: asked again, now allowed
    assert isinstance(run(reviewer.check("Bearer t1", LIST_IMAGES)), Identity)
    assert sars() == 2
    api.allowed.clear()  # the RoleBinding is removed
    clock.now += min(ALLOW_TTL, AUTHN_TTL) - 1
    assert isinstance(run(reviewer.check("Bearer t1", LIST_IMAGES)), Identity)
    assert sars() == 2
    clock.now += ALLOW_TTL
    assert isinstance(run(reviewer.check("Bearer t1", LIST_IMAGES)), Refusal)


def test_a_cached_token_is_never_accepted_past_its_own_expiry() -> None:
    api, clock = Apiserver(), Clock()
    short = jwt(exp=clock.now + 5)
    api.user(short, "alice")
    api.allowed.add(("alice", "team-a-dev"))
    reviewer = AccessReviewer(api, clock=clock)
    assert isinstance(run(reviewer.check(f"Bearer {short}", LIST_IMAGES)), Identity)
    del api.tokens[short]  # the apiserver now says it expired
    clock.now += 6
    answer = run(reviewer.check(f"Bearer {short}", LIST_IMAGES))
    assert isinstance(answer, Refusal) and answer.status == 401


def test_concurrent_requests_with_one_token_share_one_review_of_each_kind() -> None:
    api = Apiserver()
    api.delay = 0.05
    api.user("t1", "alice")
    api.allowed.add(("alice", "team-a-dev"))
    reviewer = AccessReviewer(api)

    async def burst() -> list[Any]:
        return await asyncio.gather(*(reviewer.check("Bearer t1", LIST_IMAGES) for _ in range(20)))

    answers = run(burst())
    assert all(isinstance(a, Identity) for a in answers)
    assert [kind for kind, _ in api.calls] == ["TokenReview", "SubjectAccessReview"]


def test_an_unreachable_apiserver_is_503_not_cached_and_never_shows_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = Apiserver()
    api.user("s3cret-token-value", "alice")
    api.allowed.add(("alice", "team-a-dev"))
    api.fail = True
    reviewer = AccessReviewer(api)
    with caplog.at_level(logging.DEBUG):
        answer = run(reviewer.check("Bearer s3cret-token-value", LIST_IMAGES))
    assert isinstance(answer, Refusal) and answer.status == 503
    assert "s3cret" not in answer.message and "s3cret" not in caplog.text
    api.fail = False
    assert isinstance(run(reviewer.check("Bearer s3cret-token-value", LIST_IMAGES)), Identity)


def test_the_caches_are_bounded_in_entries_whatever_tokens_arrive() -> None:
    api = Apiserver()
    reviewer = AccessReviewer(api, max_entries=16)

    async def flood() -> None:
        for n in range(200):
            await reviewer.check(f"Bearer junk-{n}", LIST_IMAGES)

    run(flood())
    assert len(reviewer._authn) <= 16
    assert all("junk" not in key for key in reviewer._authn)  # keyed by a hash, not the token
