"""Fixtures shared by every tier.

Tiers are folders: `unit` (pure logic, no root, no cluster), `agent` (real filesystems on loop
devices, root), `cluster` (the local cluster itself), `integration` (the controller against
the cluster), `e2e` (Helm install, real Prometheus), `teardown` (cluster-down leaves nothing,
always collected last). The cluster fixture starts the local cluster when a test needs it and
it is not running, exactly as `make cluster` would.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "hack"))

from localcluster import cluster as localcluster  # noqa: E402
from localcluster.components import REAL_NODE  # noqa: E402
from localcluster.config import Layout  # noqa: E402
from tests.support.kubectl import Kubectl, eventually  # noqa: E402

TIER_ORDER = ("unit", "agent", "cluster", "integration", "e2e", "teardown")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run cheap tiers first and `teardown` (which stops the cluster) strictly last."""

    def tier(item: pytest.Item) -> int:
        parts = Path(str(item.fspath)).relative_to(REPO / "tests").parts
        return TIER_ORDER.index(parts[0]) if parts and parts[0] in TIER_ORDER else 0

    items.sort(key=tier)


FAILED_LOGS = REPO / ".cluster" / "logs" / "failed-tests"
"""Logs of processes a failed test started are kept here (the test's tmp_path does not last)."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's report on the item, so fixtures can tell whether their test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def failed_test(item: pytest.Item) -> bool:
    return any(getattr(getattr(item, f"report_{when}", None), "failed", False) for when in ("setup", "call"))


@dataclass(frozen=True)
class Cluster:
    layout: Layout
    kubectl: Kubectl
    real_node: str

    @property
    def kubeconfig(self) -> Path:
        return self.layout.kubeconfig


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    layout = Layout.default()
    localcluster.up(layout, int(os.environ.get("KWOK_NODES", "3")))
    return Cluster(layout, Kubectl(layout.kubernetes_bin("kubectl"), layout.kubeconfig), REAL_NODE)


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    base = request.node.name.lower().replace("_", "-")[:40].strip("-")
    name = f"t-{base}-{uuid.uuid4().hex[:5]}"
    kubectl = cluster.kubectl
    kubectl.run("create", "namespace", name)
    eventually(
        f"default service account in {name}", lambda: kubectl.get("serviceaccount", "default", name), 30
    )
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", "--ignore-not-found")
