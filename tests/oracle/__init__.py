"""The upstream Go code as a test oracle: a typed client for the ``spacegate-oracle`` process.

``go/main.go`` runs github.com/distribution/reference and the kubelet's credential keyring
(k8s.io/kubernetes ``pkg/credentialprovider``) on the inputs the tests send, one JSON line per
request and per answer; :mod:`tests.oracle.build` builds it. Start one process per test
session and stream requests through it::

    with Oracle.start() as oracle:
        oracle.parse("nginx")["name"]                      # 'docker.io/library/nginx'
        oracle.keyring(["harbor.example.com"], "harbor.example.com/team/app:v1")

Strings travel as UTF-8 JSON. A Python string Go cannot receive unchanged (a lone surrogate)
is refused with :class:`ValueError` rather than silently replaced.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypedDict, cast

from tests.oracle.build import (
    GoNotFound,
    OracleBuildError,
    ensure_oracle,
    find_go,
    go_not_found_reason,
)

__all__ = [
    "PARSE_FIELDS",
    "GoNotFound",
    "ImageRefused",
    "Oracle",
    "OracleBuildError",
    "OracleError",
    "ParseResult",
    "ensure_oracle",
    "find_go",
    "go_not_found_reason",
]

PARSE_FIELDS = (
    "domain",
    "path",
    "tag",
    "digest",
    "name",
    "string",
    "familiar",
    "familiar_name",
)


class ParseResult(TypedDict):
    """``ParseNormalizedNamed(input)`` as seen by the oracle; fields are None when not ``ok``.

    ``tag``/``digest`` are None when the reference has none (not ``reference.Tagged`` /
    ``reference.Digested``). ``string`` is ``String()``, ``familiar`` ``FamiliarString`` and
    ``familiar_name`` ``FamiliarName``; ``error`` the Go error text.
    """

    ok: bool
    error: str | None
    domain: str | None
    path: str | None
    tag: str | None
    digest: str | None
    name: str | None
    string: str | None
    familiar: str | None
    familiar_name: str | None


class OracleError(RuntimeError):
    """The oracle process failed, died, or did not understand a request."""


class ImageRefused(ValueError):
    """The kubelet would not pull this image at all: it does not parse (Go message)."""


class Oracle:
    """One running ``spacegate-oracle`` process. Not thread-safe: one caller at a time."""

    def __init__(self, binary: Path) -> None:
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self._process = subprocess.Popen(
            [str(binary)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self.binary = binary

    @classmethod
    def start(cls) -> Oracle:
        """Build the oracle if need be (see :func:`ensure_oracle`) and start it."""
        return cls(ensure_oracle())

    # --- operations --------------------------------------------------------------------------

    def parse(self, image: str) -> ParseResult:
        """``reference.ParseNormalizedNamed(image)``, field by field."""
        return self.parse_many([image])[0]

    def parse_many(self, images: Sequence[str]) -> list[ParseResult]:
        """:meth:`parse` for many inputs, streamed: thousands take well under a second."""
        answers = self._exchange([{"op": "parse", "input": image} for image in images])
        return [_parse_result(answer) for answer in answers]

    def keyring(self, keys: Sequence[str], image: str) -> list[str]:
        """The auths keys whose credentials the kubelet offers when pulling ``image``.

        The kubelet's own steps: ``parsers.ParseImageName(image)``, then ``Lookup`` of the
        repository name in a keyring built from one pull secret whose ``auths`` has exactly
        ``keys`` (each entry's username is its key). Returned in ``Lookup`` order; keys that
        normalize to the same entry (``x`` and ``https://x``) come in Go map order.

        Raises:
            ImageRefused: the image does not parse, so the kubelet would not pull it.
        """
        answer = self._exchange([{"op": "keyring", "keys": list(keys), "image": image}])[0]
        if not answer["ok"]:
            raise ImageRefused(str(answer["error"]))
        return _strings(answer["users"])

    def lookup(self, keys: Sequence[str], name: str) -> list[str]:
        """``BasicDockerKeyring.Lookup(name)`` with ``name`` used as given (no parsing)."""
        answer = self._exchange([{"op": "lookup", "keys": list(keys), "name": name}])[0]
        return _strings(answer["users"])

    def urls_match(self, glob: str, target: str) -> bool:
        """``credentialprovider.URLsMatchStr(glob, target)`` (an error counts as no match)."""
        answer = self._exchange([{"op": "urls_match", "glob": glob, "target": target}])[0]
        return bool(answer["match"])

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close stdin (the oracle then exits) and reap the process."""
        if self._process.stdin is not None and not self._process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._stderr.close()

    def __enter__(self) -> Oracle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- protocol ----------------------------------------------------------------------------

    def _exchange(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        payload = b"".join(_encode(request) for request in requests)
        stdin, stdout = self._process.stdin, self._process.stdout
        if stdin is None or stdout is None or stdin.closed:
            raise OracleError("the oracle is closed")
        failures: list[BaseException] = []

        def write() -> None:
            try:
                stdin.write(payload)
                stdin.flush()
            except OSError as exc:  # the process died; the reader reports it
                failures.append(exc)

        # Write from a thread while reading here: a large batch would otherwise fill both
        # pipes and deadlock. A single request fits in the pipe buffer and needs no thread.
        writer = None
        if len(requests) == 1:
            write()
        else:
            writer = threading.Thread(target=write, name="oracle-writer", daemon=True)
            writer.start()
        answers = []
        try:
            for request in requests:
                line = stdout.readline()
                if not line:
                    raise OracleError(self._death_notice(request, failures))
                answer = json.loads(line)
                if not isinstance(answer, dict):
                    raise OracleError(f"unexpected answer {line!r} to {request!r}")
                if "protocol_error" in answer:
                    raise OracleError(f"{answer['protocol_error']} (request {request!r})")
                answers.append(cast(dict[str, Any], answer))
        except BaseException:
            # Answers still in flight would put later exchanges out of step, and a writer
            # blocked on a full pipe would never return: this process is done.
            self._process.kill()
            raise
        finally:
            if writer is not None:
                writer.join()
        return answers

    def _death_notice(self, request: dict[str, Any], failures: list[BaseException]) -> str:
        code = self._process.poll()
        if code is None:
            try:
                code = self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
        self._stderr.seek(0)
        stderr = self._stderr.read().decode("utf-8", "replace").strip()[-4000:]
        return (
            f"the oracle ({self.binary}) stopped answering at {request!r}: exit status {code}"
            + (f", write failed: {failures[0]}" if failures else "")
            + (f"\n{stderr}" if stderr else "")
        )


def _encode(request: dict[str, Any]) -> bytes:
    text = json.dumps(request, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{request!r} is not valid UTF-8 (lone surrogate): Go would receive U+FFFD instead"
        ) from exc


def _parse_result(answer: dict[str, Any]) -> ParseResult:
    result: dict[str, Any] = {"ok": bool(answer["ok"]), "error": answer.get("error")}
    for field in PARSE_FIELDS:
        result[field] = answer.get(field)
    return cast(ParseResult, result)


def _strings(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise OracleError(f"expected a list of strings, got {value!r}")
    return cast(list[str], value)
