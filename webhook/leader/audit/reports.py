"""Writes the audit's policy reports: only when their CRD is installed, only when they change.

A pass reads spacegate's existing reports once (page by page: the digest of each report's
content, not the report, is kept; ``policy.report.report_digest``), writes only reports
whose content differs, and afterwards deletes spacegate's reports of resources the pass no
longer reports on individually (a Pod adopted by a ReplicaSet; a switched report format
leaves the old kind alone). A report without spacegate's label is never touched. One
failed write (a namespace being deleted refuses new content) is logged and the pass goes
on. Calls block; the pass runs them in a child process.
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from policy.provisioning import MANAGED_BY, MANAGED_BY_LABEL
from policy.report import API_VERSIONS, ReportFormat, report_digest
from webhook.clients.errors import describe_api_error
from webhook.clients.kube_paging import get, list_items

log = logging.getLogger(__name__)

__all__ = ["ReportWriter"]


class ReportWriter:
    """The reports of one format: what exists, and writing only what changed."""

    def __init__(self, api: client.ApiClient, report_format: ReportFormat) -> None:
        self._api: Any = client.CustomObjectsApi(api)
        self._api_client = api
        self.format = report_format
        api_version, self.kind = API_VERSIONS[report_format]
        self.group, self.version = api_version.split("/")
        self.plural = "policyreports" if report_format == "wgpolicyk8s" else "reports"
        self._existing: dict[tuple[str, str], tuple[str, str]] = {}  # (ns, name) -> (rv, digest)
        self._foreign: set[tuple[str, str]] = set()

    def installed(self) -> bool:
        """The report CRD is served (discovery of its group version)."""
        status, _ = get(self._api_client, f"/apis/{self.group}/{self.version}")
        if status == 404:
            return False
        if status != 200:
            raise ApiException(status=status, reason="report CRD discovery")
        return True

    def load(self) -> None:
        """Read what exists now: spacegate's reports (digests), and names taken by others."""
        self._existing.clear()
        self._foreign.clear()
        path = f"/apis/{self.group}/{self.version}/{self.plural}"
        for item in list_items(self._api_client, path):
            meta = item.get("metadata") or {}
            key = (meta.get("namespace", ""), meta.get("name", ""))
            if (meta.get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY:
                self._existing[key] = (meta.get("resourceVersion", ""), report_digest(item))
            else:
                self._foreign.add(key)

    def write(self, report: dict[str, Any]) -> str:
        """Create or update one report: "created", "updated", "unchanged", "foreign" or
        "failed" (logged; the pass goes on)."""
        meta = report["metadata"]
        key = (meta["namespace"], meta["name"])
        if key in self._foreign:
            return "foreign"
        current = self._existing.pop(key, None)
        try:
            if current is None:
                self._api.create_namespaced_custom_object(
                    self.group, self.version, meta["namespace"], self.plural, report
                )
                return "created"
            if current[1] == report_digest(report):
                return "unchanged"
            body = {**report, "metadata": {**meta, "resourceVersion": current[0]}}
            self._api.replace_namespaced_custom_object(
                self.group, self.version, meta["namespace"], self.plural, meta["name"], body
            )
            return "updated"
        except ApiException as exc:
            if exc.status == 409 and current is None:  # created meanwhile (another writer)
                return "unchanged"
            log.warning(
                "audit: could not write report %s/%s: %s",
                key[0],
                key[1],
                describe_api_error(exc),
            )
            return "failed"

    def delete_stale(self) -> int:
        """Delete spacegate's reports this pass did not write (their resources are gone from
        the pass: deleted, adopted, or no longer listed); the number deleted."""
        deleted = 0
        for namespace, name in sorted(self._existing):
            try:
                self._api.delete_namespaced_custom_object(
                    self.group, self.version, namespace, self.plural, name
                )
                deleted += 1
            except ApiException as exc:
                if exc.status != 404:
                    log.warning(
                        "audit: could not delete report %s/%s: %s",
                        namespace,
                        name,
                        describe_api_error(exc),
                    )
        self._existing.clear()
        return deleted
