"""The monitoring files volprobe ships (rules, their tests, the dashboard) and how to walk them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "rules" / "volprobe.rules.yaml"
RULE_FILES = sorted((REPO / "rules").glob("*.yaml"))
RULE_TESTS = sorted((REPO / "rules" / "tests").glob("*.yaml"))
DASHBOARD = REPO / "dashboards" / "volprobe.json"


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair of a JSON/YAML document, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)
