"""Writes the audit's policy reports: only when their CRD is installed, only when they change,
and never leaving another writer's content under spacegate's name.

A pass reads the reports under spacegate's names once (``spacegate-<uid>``,
``policy.report.report_name``; page by page: the digest of each report's content, not the
report, is kept; ``policy.report.report_digest``), writes only reports whose content
differs, and afterwards deletes every report under spacegate's names that the pass did not
write (its resource deleted, adopted, or no longer listed; a switched report format leaves
the old kind alone).

Those names are spacegate's by construction, and anything a tenant may create there is
hostile: a report there without spacegate's label is **replaced** by spacegate's, counted
(``replaced``, ``spacegate_audit_reports_replaced_total``) and logged, never honoured; one
with the label but other content is rewritten like any stale report; one that appears
between the read and the write is read again and treated the same way. Reports
under other names are other tools' (Kyverno and Kubewarden name theirs by the bare UID) and
are never touched, except spacegate's own from before the prefix (labelled and every result
spacegate's), which are deleted. The chart also keeps tenants from writing under spacegate's
names at all (a ValidatingAdmissionPolicy); this writer does not rely on it.

One failed write (a namespace being deleted refuses new content) is logged and the pass goes
on. Calls block; the pass runs them in a child process.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from policy.provisioning import MANAGED_BY, MANAGED_BY_LABEL
from policy.report import API_VERSIONS, NAME_PREFIX, SOURCE, ReportFormat, report_digest
from webhook.clients.errors import describe_api_error
from webhook.clients.kube_paging import get, list_items
from webhook.clients.kube_writes import TOO_MANY_REQUESTS, WritePool

log = logging.getLogger(__name__)

_CONFLICT = 409  # a delete's precondition (the resourceVersion read) no longer holds

__all__ = ["ReportWriter"]


@dataclass(frozen=True, slots=True)
class _Stored:
    """A report found under one of spacegate's names: its version, what it says, and
    whether it carries spacegate's label (without it, spacegate did not write it)."""

    version: str
    digest: str
    labelled: bool


def _labelled(meta: dict[str, Any]) -> bool:
    labels = meta.get("labels")
    return isinstance(labels, dict) and labels.get(MANAGED_BY_LABEL) == MANAGED_BY


def _legacy(item: dict[str, Any]) -> bool:
    """A report an older spacegate wrote under the bare UID: labelled, and every result its."""
    results = item.get("results")
    return (
        _labelled(item.get("metadata") or {})
        and isinstance(results, list)
        and all(isinstance(r, dict) and r.get("source") == SOURCE for r in results)
    )


class ReportWriter:
    """The reports of one format: what exists under spacegate's names, and writing only what
    changed."""

    def __init__(self, api: client.ApiClient, report_format: ReportFormat) -> None:
        self._api: Any = client.CustomObjectsApi(api)
        self._api_client = api
        self.format = report_format
        api_version, self.kind = API_VERSIONS[report_format]
        self.group, self.version = api_version.split("/")
        self.plural = "policyreports" if report_format == "wgpolicyk8s" else "reports"
        self._existing: dict[tuple[str, str], _Stored] = {}  # (ns, name) -> what is there
        self._legacy: dict[tuple[str, str], str] = {}  # (ns, name) -> resourceVersion

    def installed(self) -> bool:
        """The report CRD is served (discovery of its group version)."""
        status, _ = get(self._api_client, f"/apis/{self.group}/{self.version}")
        if status == 404:
            return False
        if status != 200:
            raise ApiException(status=status, reason="report CRD discovery")
        return True

    def load(self) -> None:
        """Read what exists now under spacegate's names (and its reports of old names)."""
        self._existing.clear()
        self._legacy.clear()
        path = f"/apis/{self.group}/{self.version}/{self.plural}"
        for item in list_items(self._api_client, path):
            meta = item.get("metadata") or {}
            key = (meta.get("namespace", ""), meta.get("name", ""))
            if key[1].startswith(NAME_PREFIX):
                self._existing[key] = self._stored(item)
            elif _legacy(item):
                self._legacy[key] = meta.get("resourceVersion", "")

    @staticmethod
    def _stored(item: dict[str, Any]) -> _Stored:
        meta = item.get("metadata") or {}
        return _Stored(meta.get("resourceVersion", ""), report_digest(item), _labelled(meta))

    def write(self, report: dict[str, Any]) -> str:
        """Create or update one report: "created", "updated", "unchanged", "replaced" (what
        stood under its name was not spacegate's) or "failed" (logged; the pass goes on).
        A 429 is raised, for the pool's throttle to wait out (``webhook.clients.kube_writes``)."""
        meta = report["metadata"]
        key = (meta["namespace"], meta["name"])
        read = self._existing.pop(key, None)
        current = read
        try:
            if current is None:
                try:
                    self._api.create_namespaced_custom_object(
                        self.group, self.version, meta["namespace"], self.plural, report
                    )
                    return "created"
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                # Created meanwhile under spacegate's name: read it, then as any other.
                current = self._read(key)
                if current is None:  # gone again: the next pass creates it
                    return "failed"
            return self._update(key, report, current)
        except ApiException as exc:
            if exc.status == TOO_MANY_REQUESTS:  # the pool's throttle waits and tries again
                if read is not None:
                    self._existing[key] = read
                raise
            log.warning(
                "audit: could not write report %s/%s: %s",
                key[0],
                key[1],
                describe_api_error(exc),
            )
            return "failed"

    def _read(self, key: tuple[str, str]) -> _Stored | None:
        try:
            item = self._api.get_namespaced_custom_object(
                self.group, self.version, key[0], self.plural, key[1]
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return self._stored(item)

    def _update(self, key: tuple[str, str], report: dict[str, Any], current: _Stored) -> str:
        if current.labelled and current.digest == report_digest(report):
            return "unchanged"
        meta = report["metadata"]
        body = {**report, "metadata": {**meta, "resourceVersion": current.version}}
        self._api.replace_namespaced_custom_object(
            self.group, self.version, key[0], self.plural, key[1], body
        )
        if current.labelled:
            return "updated"
        log.warning(
            "audit: report %s/%s stands under spacegate's name but spacegate did not write "
            "it; replaced with spacegate's",
            key[0],
            key[1],
        )
        return "replaced"

    def delete_stale(self, pool: WritePool | None = None) -> int:
        """Delete the reports under spacegate's names this pass did not write, and its
        reports of old names (on ``pool`` when given); the number deleted."""
        stale = sorted(
            {key: stored.version for key, stored in self._existing.items()}.items()
            | self._legacy.items()
        )
        self._existing.clear()
        self._legacy.clear()
        deletes = [
            functools.partial(self._delete, namespace, name, version)
            for (namespace, name), version in stale
        ]
        if pool is not None:
            done = pool.map(deletes)
        else:
            with WritePool(1) as own:  # 429s waited out as on the pass's pool
                done = own.map(deletes)
        return sum(1 for deleted in done if deleted is True)

    def _delete(self, namespace: str, name: str, version: str) -> bool:
        """Delete the report as it was read (``version``): one rewritten since, by anyone,
        is left for the next pass to judge."""
        options = {"preconditions": {"resourceVersion": version}} if version else None
        try:
            self._api.delete_namespaced_custom_object(
                self.group, self.version, namespace, self.plural, name, body=options
            )
        except ApiException as exc:
            if exc.status == TOO_MANY_REQUESTS:
                raise  # the pool's throttle waits and tries again
            if exc.status == _CONFLICT:
                log.info("audit: report %s/%s changed since it was read; kept", namespace, name)
            elif exc.status != 404:
                log.warning(
                    "audit: could not delete report %s/%s: %s",
                    namespace,
                    name,
                    describe_api_error(exc),
                )
            return False
        return True
