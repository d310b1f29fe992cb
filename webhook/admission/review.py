"""The AdmissionReview wire format: decode what the apiserver sends, encode what it accepts.

This is the only module that knows the JSON shape of an ``AdmissionReview``. Deciding is
``policy.decide``'s job and HTTP is ``webhook.admission.app``'s; keeping the codec apart means every
rule of ``docs/protocol.md`` §1-2 is checked in one place and tested without a
server (controller-runtime keeps ``decode.go``/``response.go`` apart from ``http.go`` for the
same reason).

Two error families are named apart (as kopf does):

- the *object* is not admissible: a :class:`policy.decision.Decision` with
  ``allowed=False``, encoded as HTTP 200 with ``status.code`` 403 ``Forbidden``;
- the *review request* is unusable: :class:`MalformedReview`. When its ``uid`` could be
  read the reply is still a well-formed AdmissionReview (HTTP 200, code 400 in
  ``status``), so the apiserver shows our message instead of "failed calling webhook";
  otherwise it is a bare ``metav1.Status`` with a 4xx HTTP code, which client-go also
  turns into a readable error.

Replies always echo the AdmissionReview ``apiVersion`` received (``v1`` or ``v1beta1``):
the apiserver rejects a reply whose GVK is not exactly the request's (``docs/protocol.md`` §2).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, Literal, NamedTuple, NotRequired, TypedDict

import orjson

from policy.bindings import GROUP as BINDING_GROUP
from policy.bindings import KIND as BINDING_KIND
from policy.decision import Decision
from policy.messages import single_line
from policy.workload import is_workload, object_name, object_namespace

__all__ = [
    "API_VERSIONS",
    "MAX_BODY_BYTES",
    "OPERATIONS",
    "V1",
    "V1BETA1",
    "EncodedReply",
    "MalformedReview",
    "Reply",
    "ReviewRequest",
    "allow",
    "deny",
    "encode_review",
    "encode_status",
    "invalid_reply",
    "parse_review",
    "reply_for",
]

V1: Final = "admission.k8s.io/v1"
V1BETA1: Final = "admission.k8s.io/v1beta1"
API_VERSIONS: Final = frozenset({V1, V1BETA1})

# The largest review the apiserver can legitimately send, with room to spare: an UPDATE carries
# the object (decoded from a request body of at most 3 MiB) and the stored old object (at most
# 1.5 MiB in etcd's protobuf, about twice that as JSON), each re-encoded as JSON, plus a small
# envelope. The arithmetic, and what happens above the limit, is in docs/limits.md.
MAX_BODY_BYTES: Final = 8 * 1024 * 1024

OPERATIONS: Final = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]


# --------------------------------------------------------------------------- wire types


class StatusDict(TypedDict):
    """The part of ``metav1.Status`` the apiserver reads from a denial."""

    code: int
    reason: str
    message: str
    status: Literal["Failure"]


class ResponseDict(TypedDict):
    """``admission.k8s.io/v1`` ``AdmissionResponse``, as we send it."""

    uid: str
    allowed: bool
    status: NotRequired[StatusDict]
    warnings: NotRequired[list[str]]
    auditAnnotations: NotRequired[dict[str, str]]
    patch: NotRequired[str]
    patchType: NotRequired[Literal["JSONPatch"]]


class ReviewDict(TypedDict):
    """The reply envelope."""

    apiVersion: str
    kind: Literal["AdmissionReview"]
    response: ResponseDict


# --------------------------------------------------------------------------- decode


class MalformedReview(ValueError):
    """The review request cannot be decided on; ``code`` is the HTTP-style status code.

    ``uid`` is set when it could be read, so the caller can still answer with a
    well-formed AdmissionReview; ``kind`` and ``operation`` when the request got that far
    (for the metrics' labels).
    """

    def __init__(
        self,
        message: str,
        *,
        code: int = 400,
        uid: str | None = None,
        api_version: str = V1,
        kind: str = "",
        operation: str = "",
    ) -> None:
        super().__init__(single_line(message[:4096]))
        self.code = code
        self.uid = uid
        self.api_version = api_version
        self.kind = kind
        self.operation = operation

    @property
    def message(self) -> str:
        """The single-line explanation sent back."""
        return str(self.args[0])


class ReviewRequest(NamedTuple):
    """What the server needs from an ``AdmissionRequest``, already checked and typed.

    ``object`` is None exactly for DELETE and CONNECT (the apiserver sends null there);
    for CREATE and UPDATE decoding guarantees a JSON object.

    A named tuple rather than a frozen dataclass: one is built per review, and a frozen
    dataclass's ``__init__`` (an ``object.__setattr__`` per field) costs several times as
    much for the same immutability.
    """

    api_version: str
    uid: str
    operation: Operation
    group: str
    kind: str
    namespace: str
    name: str
    sub_resource: str = ""
    dry_run: bool = False
    object: Mapping[str, Any] | None = None
    # UPDATE: the object before the update; DELETE: the object deleted (binding reviews)
    old_object: Mapping[str, Any] | None = None
    user: str = ""  # request.userInfo.username: who made the request
    groups: tuple[str, ...] = ()  # request.userInfo.groups

    @property
    def is_namespace(self) -> bool:
        """A core Namespace: what the namespace guard judges."""
        return self.kind == "Namespace" and self.group == ""

    @property
    def is_binding(self) -> bool:
        """A RegistrySpaceBinding: what ``webhook.admission.bindings`` answers."""
        return self.kind == BINDING_KIND and self.group == BINDING_GROUP

    @property
    def is_workload(self) -> bool:
        """A pod-producing kind of its own API group: something spacegate decides on."""
        return is_workload(self.kind, self.group)


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return "a number"


def parse_review(body: bytes) -> ReviewRequest:
    """Decode and check an AdmissionReview body (v1 or v1beta1).

    Raises :class:`MalformedReview` naming what is wrong; from the point where
    ``request.uid`` is known, the exception carries it.
    """
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # Checked only here: stripping every valid body would copy it for nothing.
        if not body.strip():
            raise MalformedReview(
                "empty request body: expected an AdmissionReview JSON object"
            ) from None
        raise MalformedReview(f"request body is not valid JSON: {exc}") from None
    if not isinstance(review, dict):
        raise MalformedReview(
            f"request body is {_describe(review)}, expected an AdmissionReview object"
        )
    api_version = review.get("apiVersion")
    if review.get("kind") != "AdmissionReview" or api_version not in API_VERSIONS:
        raise MalformedReview(
            "expected kind AdmissionReview with apiVersion admission.k8s.io/v1 or "
            f"admission.k8s.io/v1beta1, got kind {str(review.get('kind'))[:64]!r} "
            f"apiVersion {str(api_version)[:64]!r}"
        )
    request = review.get("request")
    if not isinstance(request, dict):
        raise MalformedReview(
            f"AdmissionReview.request is {_describe(request)}, expected an object",
            api_version=api_version,
        )
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MalformedReview(
            "AdmissionReview.request.uid is missing or not a non-empty string",
            api_version=api_version,
        )
    operation = request.get("operation")
    if operation not in OPERATIONS:
        raise MalformedReview(
            f"request.operation {str(operation)[:64]!r} is not one of CREATE, UPDATE, "
            "DELETE, CONNECT",
            uid=uid,
            api_version=api_version,
        )
    gvk = request.get("kind")
    if not isinstance(gvk, dict) or not isinstance(gvk.get("kind"), str):
        raise MalformedReview(
            "request.kind must be an object with a string 'kind'",
            uid=uid,
            api_version=api_version,
        )
    group = gvk.get("group") or ""
    if not isinstance(group, str):
        raise MalformedReview(
            "request.kind.group must be a string", uid=uid, api_version=api_version
        )
    obj = request.get("object")
    if operation in ("CREATE", "UPDATE"):
        if not isinstance(obj, dict):
            raise MalformedReview(
                f"request.object is {_describe(obj)}; {operation} needs the object",
                uid=uid,
                api_version=api_version,
            )
    else:
        obj = None  # DELETE/CONNECT: nothing is admitted, so nothing is read
    namespace = request.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        namespace = (object_namespace(obj) if obj is not None else None) or ""
    name = request.get("name")
    if not isinstance(name, str) or not name:
        name = object_name(obj) if obj is not None else ""
    sub_resource = request.get("subResource")
    old_obj = request.get("oldObject") if operation in ("UPDATE", "DELETE") else None
    if not isinstance(old_obj, dict):
        old_obj = None
    user, groups = _user_info(request.get("userInfo"))
    return ReviewRequest(  # positionally: the fields in order, a little cheaper per review
        api_version,
        uid,
        operation,
        group,
        gvk["kind"],
        namespace,
        name,
        sub_resource if isinstance(sub_resource, str) else "",
        request.get("dryRun") is True,
        obj,
        old_obj,
        user,
        groups,
    )


def _user_info(value: object) -> tuple[str, tuple[str, ...]]:
    """``userInfo`` username and groups; anything malformed counts as nobody."""
    if not isinstance(value, dict):
        return "", ()
    user = value.get("username")
    groups = value.get("groups")
    return (
        user if isinstance(user, str) else "",
        tuple(g for g in groups if isinstance(g, str)) if isinstance(groups, list) else (),
    )


# --------------------------------------------------------------------------- replies


_NO_ANNOTATIONS: Final[Mapping[str, str]] = MappingProxyType({})


class Reply(NamedTuple):
    """A transport-free answer; :func:`encode_review` adds uid, envelope and base64.

    Immutable like every reply component (a named tuple for the same reason as
    :class:`ReviewRequest`).
    """

    allowed: bool
    code: int = 200
    reason: str = ""
    message: str = ""
    warnings: tuple[str, ...] = ()
    audit_annotations: Mapping[str, str] = _NO_ANNOTATIONS
    patch: tuple[Mapping[str, Any], ...] = ()


def allow(message: str = "", *, warnings: tuple[str, ...] = ()) -> Reply:
    """An admitting reply without changes."""
    return Reply(allowed=True, message=message, warnings=warnings)


def deny(message: str, *, code: int = 403, reason: str = "Forbidden") -> Reply:
    """A refusal. The apiserver turns a code below 400 into 400, so use a real 4xx/5xx."""
    return Reply(allowed=False, code=code, reason=reason, message=single_line(message))


_REASONS: Final[Mapping[int, str]] = MappingProxyType(
    {
        400: "BadRequest",
        408: "Timeout",
        413: "RequestEntityTooLarge",
        415: "UnsupportedMediaType",
        500: "InternalError",
    }
)


def invalid_reply(error: MalformedReview, *, mutating: bool) -> Reply:
    """The answer to a request we could not decide on, once its uid is known.

    ``/validate`` denies with the error's code: failing closed is the point of a
    validating policy, and the message tells the user what was wrong. ``/mutate`` admits
    without a patch: the mutating webhook only adds pull secrets, it is not where
    spacegate enforces anything, and the validating webhook sees the same request and
    refuses it. Denying twice would only hide the validator's clearer message.
    """
    if mutating:
        return allow(warnings=(single_line(f"spacegate: request not mutated: {error.message}"),))
    return deny(
        f"spacegate could not check this request: {error.message}",
        code=error.code,
        reason=_REASONS.get(error.code, "BadRequest"),
    )


def reply_for(decision: Decision, *, mutating: bool) -> Reply:
    """Translate a decision for one endpoint.

    ``/validate`` carries the verdict: allowed or a 403 denial, warnings and audit
    annotations. ``/mutate`` always admits and only carries the patch: validating
    webhooks run after every mutation, so the verdict is taken once, on the final object,
    and users do not see each warning and annotation twice.
    """
    if mutating:
        return Reply(allowed=True, patch=decision.patch)
    return Reply(
        allowed=decision.allowed,
        code=200 if decision.allowed else 403,
        reason="" if decision.allowed else "Forbidden",
        message=decision.message,
        warnings=decision.warnings,
        audit_annotations=decision.audit_annotations,
    )


def encode_review(*, uid: str, reply: Reply, mutating: bool, api_version: str = V1) -> bytes:
    """The AdmissionReview bytes for ``reply``, passing every check of ``docs/protocol.md`` §2.

    - ``uid`` echoed; ``apiVersion`` echoes the request's (v1 or v1beta1).
    - ``status`` only on a refusal: code, reason and message, ``status: Failure``.
    - ``patch``/``patchType`` only from ``/mutate`` and only together, with a non-empty
      patch (standard base64 with padding); never from ``/validate``.
    """
    response: ResponseDict = {"uid": uid, "allowed": reply.allowed}
    if not reply.allowed:
        response["status"] = {
            "code": reply.code,
            "reason": reply.reason or _REASONS.get(reply.code, "Forbidden"),
            "message": reply.message,
            "status": "Failure",
        }
    if reply.warnings:
        response["warnings"] = list(reply.warnings)
    if reply.audit_annotations:
        response["auditAnnotations"] = dict(reply.audit_annotations)
    if mutating and reply.allowed and reply.patch:
        response["patch"] = base64.b64encode(orjson.dumps(list(reply.patch))).decode("ascii")
        response["patchType"] = "JSONPatch"
    review: ReviewDict = {
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "response": response,
    }
    return orjson.dumps(review)


_ENVELOPE_END: Final = b',"kind":"AdmissionReview","response":{"uid":'


def _envelope(api_version: str) -> bytes:
    """What :func:`encode_review` writes before the uid's JSON string."""
    return b'{"apiVersion":' + orjson.dumps(api_version) + _ENVELOPE_END


_ENVELOPES: Final[Mapping[str, bytes]] = MappingProxyType(
    {version: _envelope(version) for version in API_VERSIONS}
)


class EncodedReply:
    """:func:`encode_review` for one reply, done ahead of the uid and apiVersion.

    The server answers the same memoized decisions over and over, with only the request's
    uid (and its apiVersion, one of two) changing; serializing the rest once, base64
    patch included, leaves a review one small ``orjson.dumps`` and a join. The bytes are
    cut from :func:`encode_review`'s own output, so the two cannot disagree.
    """

    __slots__ = ("_tail",)

    def __init__(self, reply: Reply, *, mutating: bool) -> None:
        head = _ENVELOPES[V1] + b'""'
        full = encode_review(uid="", reply=reply, mutating=mutating, api_version=V1)
        assert full.startswith(head), full
        self._tail = full[len(head) :]

    def encode(self, uid: str, api_version: str = V1) -> bytes:
        """The AdmissionReview bytes :func:`encode_review` gives for this uid and version."""
        envelope = _ENVELOPES.get(api_version) or _envelope(api_version)
        return envelope + orjson.dumps(uid) + self._tail


def encode_status(code: int, message: str) -> bytes:
    """A bare ``metav1.Status`` for requests that have no readable uid.

    client-go turns a non-2xx body holding a Status into an error carrying our message,
    which is the best the apiserver's user can be told in that case.
    """
    return orjson.dumps(
        {
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "code": code,
            "reason": _REASONS.get(code, "BadRequest"),
            "message": single_line(message),
        }
    )
