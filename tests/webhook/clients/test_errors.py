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
    assert describe_api_error(retries) == "ConnectionRefusedError: [Errno 111] Connection refused"


def test_any_other_error_is_its_type_and_first_line() -> None:
    assert describe_api_error(ValueError("bad\nsecond line")) == "ValueError: bad"
    assert describe_api_error(TimeoutError()) == "TimeoutError"
