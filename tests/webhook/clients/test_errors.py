"""A failed Kubernetes call as one short, safe line."""

from __future__ import annotations

import urllib3
from kubernetes.client.exceptions import ApiException

from webhook.clients.errors import describe_api_error


def test_an_api_error_is_its_status_and_reason_never_its_headers_or_body() -> None:
    exc = ApiException(status=409, reason="Conflict")
    exc.body = '{"message": "token s3cret-token"}'
    exc.headers = {"Authorization": "Bearer s3cret-token"}
    assert describe_api_error(exc) == "HTTP 409 Conflict"
    assert describe_api_error(ApiException(status=500)) == "HTTP 500"


def test_a_connection_failure_says_what_failed_not_the_retry_bookkeeping() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    retries = urllib3.exceptions.MaxRetryError(None, "/api/v1/namespaces", reason=refused)  # type: ignore[arg-type]
    assert describe_api_error(retries) == (
        "/api/v1/namespaces: ConnectionRefusedError: [Errno 111] Connection refused"
    )


def test_any_other_error_is_its_type_and_first_line() -> None:
    assert describe_api_error(ValueError("bad\nsecond line")) == "ValueError: bad"
    assert describe_api_error(TimeoutError()) == "TimeoutError"


def test_an_api_refusal_is_described_by_its_status_and_the_apiservers_message_only() -> None:
    refused = ApiException(status=403, reason="Forbidden")
    refused.body = (
        '{"kind":"Status","status":"Failure","reason":"Forbidden","code":403,"message":'
        '"leases.coordination.k8s.io \\"spacegate-provisioner\\" is forbidden: User '
        '\\"jane\\" cannot get resource \\"leases\\""}'
    )
    refused.headers = {"Authorization": "Bearer s3cr3t", "Audit-Id": "abc"}

    described = describe_api_error(refused)

    assert described == (
        'HTTP 403 Forbidden: leases.coordination.k8s.io "spacegate-provisioner" is forbidden: '
        'User "jane" cannot get resource "leases"'
    )
    assert "s3cr3t" not in described


def test_an_answer_that_is_not_a_status_gives_the_status_line_alone() -> None:
    proxy_page = ApiException(status=502, reason="Bad Gateway")
    proxy_page.body = "<html><body>upstream connect error</body></html>"

    assert describe_api_error(proxy_page) == "HTTP 502 Bad Gateway"
    assert describe_api_error(ApiException(status=500)) == "HTTP 500"


def test_a_lost_connection_names_the_url_and_the_reason() -> None:
    refused = urllib3.exceptions.MaxRetryError(
        None,  # type: ignore[arg-type]  # no pool is needed to describe it
        "/api/v1/namespaces?limit=500",
        urllib3.exceptions.ProtocolError("Connection aborted."),
    )

    assert (
        describe_api_error(refused)
        == "/api/v1/namespaces?limit=500: ProtocolError: Connection aborted."
    )
    assert describe_api_error(urllib3.exceptions.ProtocolError("Connection aborted.")) == (
        "ProtocolError: Connection aborted."
    )
    assert describe_api_error(urllib3.exceptions.ProtocolError()) == "ProtocolError"
