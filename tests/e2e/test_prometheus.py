"""A real Prometheus scrapes the controller running in the cluster and evaluates the shipped
rules: the provisioning alert fires for `broken` and not for `standard` (collected last in the
e2e tier, so the alert's `for:` has been running during the other e2e tests)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.kubectl import eventually
from tests.support.prometheus import Prometheus

pytestmark = pytest.mark.e2e


def test_prometheus_scrapes_the_leader_through_the_service(prometheus: Prometheus) -> None:
    def healthy_target() -> list[dict[str, object]]:
        return [t for t in prometheus.api("targets")["activeTargets"] if t["health"] == "up"]

    targets = eventually("the metrics Service scraped", healthy_target, 90)
    assert len(targets) == 1
    result = prometheus.api(
        "query", query='sum(volprobe_probe_runs_total{probe="e2e-standard",result="success"})'
    )
    assert float(result["result"][0]["value"][1]) >= 1


def test_provisioning_alert_fires_for_broken_and_not_for_standard(prometheus: Prometheus) -> None:
    def firing(storage_class: str) -> list[dict[str, Any]]:
        return [
            alert
            for alert in prometheus.alerts()
            if alert["labels"].get("alertname") == "VolprobeProvisioningFailing"
            and alert["labels"].get("storage_class") == storage_class
            and alert["state"] == "firing"
        ]

    # The rule needs repeated failures with no success, then `for: 5m` (evaluated every 5 s here).
    alerts = eventually("VolprobeProvisioningFailing firing for broken", lambda: firing("broken"), 480, 5)
    assert alerts[0]["labels"]["severity"] == "critical"
    assert alerts[0]["annotations"]["runbook_url"]
    standard = [a for a in prometheus.alerts() if a["labels"].get("storage_class") == "standard"]
    assert standard == [], standard
    stopped = [a for a in prometheus.alerts() if a["labels"].get("alertname") == "VolprobeProbeStopped"]
    assert stopped == [], "a running controller must not look stopped"
