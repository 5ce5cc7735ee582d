"""The alert rules are valid, tested, documented, and the dashboard's queries parse.

Runs the real promtool (Debian package `prometheus`, installed by `make deps`): a missing
promtool is a failure, never a skip, or the rules would go untested without anyone noticing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import gendocs
from tests.support.monitoring import DASHBOARD, REPO, RULE_TESTS, RULES, walk

RUNBOOKS = REPO / "docs" / "runbooks.md"
STREAK_ALERTS = ("VolprobeProvisioningFailing", "VolprobeMountFailing", "VolprobeMountFailingWidespread")
RUNBOOK_BASE = "https://github.com/volprobe/volprobe/blob/main/docs/runbooks.md"
SEVERITIES = ("critical", "warning")
# The only alert allowed to page without a `for:` (corruption is never a blip).
PAGES_AT_ONCE = {"VolprobeDataIntegrity"}


def promtool() -> str:
    path = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if path is None:
        pytest.fail("promtool not found: install it with `make deps` (Debian package `prometheus`)")
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=300, cwd=REPO, check=False
    )


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def alert_names() -> list[str]:
    return sorted({str(rule["alert"]) for rule in alerts()})


def duration_seconds(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", text))


def github_anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


# -- promtool --------------------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    result = run_promtool("check", "rules", str(RULES.relative_to(REPO)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_rules() -> None:
    assert RULE_TESTS, "no promtool tests in rules/tests/"
    result = run_promtool("test", "rules", *(str(p.relative_to(REPO)) for p in RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout + result.stderr


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Every panel query and variable query, Grafana variables filled in, passes promtool."""
    board = json.loads(DASHBOARD.read_text())
    exprs = [str(value) for key, value in walk(board["panels"]) if key == "expr"]
    for variable in board["templating"]["list"]:
        if variable.get("type") == "query":
            query = variable["query"]
            text = query.get("query", "") if isinstance(query, dict) else str(query)
            match = re.fullmatch(r"label_values\((.*),\s*\w+\s*\)", text.strip(), re.DOTALL)
            if match:
                exprs.append(match.group(1))
    assert exprs
    filled = [_fill_grafana_variables(expr) for expr in exprs]
    document = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:query_{n}:check", "expr": e} for n, e in enumerate(filled)],
            }
        ]
    }
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump(document))
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def _fill_grafana_variables(expr: str) -> str:
    expr = re.sub(r"\$__rate_interval|\$__interval|\$\{__rate_interval\}", "5m", expr)
    expr = re.sub(r"\$__range|\$\{__range\}", "6h", expr)
    return re.sub(r"\$\{\w+(:\w+)?\}|\$\w+", ".*", expr)


# -- what every alert carries ----------------------------------------------------------------------


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: f"{r['alert']}-{r['labels'].get('severity')}")
def test_alert_has_severity_summary_description_and_runbook(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert rule.get("labels", {}).get("severity") in SEVERITIES, (
        f"{name}: severity must be one of {SEVERITIES}"
    )
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"{name}: annotation {key} is missing"
    assert annotations["runbook_url"] == f"{RUNBOOK_BASE}#{name.lower()}"


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: f"{r['alert']}-{r['labels'].get('severity')}")
def test_pages_wait_before_firing(rule: dict[str, Any]) -> None:
    """Noise control: a critical alert needs a `for:` (a blip must not wake anyone up)."""
    if rule["labels"]["severity"] != "critical" or rule["alert"] in PAGES_AT_ONCE:
        return
    assert duration_seconds(str(rule.get("for", ""))) >= 60, f"{rule['alert']} pages without `for:`"


def test_runbooks_have_a_section_per_alert() -> None:
    text = RUNBOOKS.read_text()
    anchors = {github_anchor(h) for h in re.findall(r"^##+ (.+)$", text, re.MULTILINE)}
    missing = [name for name in alert_names() if name.lower() not in anchors]
    assert not missing, f"docs/runbooks.md has no section for {missing}"


def test_every_alert_has_positive_and_negative_promtool_cases() -> None:
    positive: set[str] = set()
    negative: set[str] = set()
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (positive if case.get("exp_alerts") else negative).add(case["alertname"])
    names = set(alert_names())
    assert names - positive == set(), f"alerts never expected to fire: {sorted(names - positive)}"
    assert names - negative == set(), f"alerts never expected to stay quiet: {sorted(names - negative)}"
    assert (positive | negative) <= names, f"tests of unknown alerts: {sorted((positive | negative) - names)}"


def test_every_severity_of_an_alert_fires_in_a_test() -> None:
    expected = {(str(r["alert"]), str(r["labels"]["severity"])) for r in alerts()}
    fired: set[tuple[str, str]] = set()
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                for alert in case.get("exp_alerts") or []:
                    fired.add((case["alertname"], str(alert["exp_labels"]["severity"])))
    assert expected - fired == set(), f"never tested firing: {sorted(expected - fired)}"


# -- time to page ----------------------------------------------------------------------------------


def test_time_to_page_cases_fire_when_their_names_say_and_not_one_evaluation_earlier() -> None:
    """docs/alerts.md states these figures (gendocs reads them from the cases): keep them honest."""
    document = yaml.safe_load(gendocs.TIME_TO_PAGE.read_text())
    step = duration_seconds(str(document["evaluation_interval"]))
    tests = {str(test["name"]): test for test in document["tests"]}
    cases = gendocs.time_to_page()
    assert len(cases) == len(tests)
    for name, alert, interval, seconds in cases:
        assert f" at interval {interval} s, " in name, name
        assert name.endswith(f" {gendocs.minutes_and_seconds(seconds)} after the fault"), name
        before = gendocs.FAULT_AT + seconds - step
        quiet = [
            case
            for case in tests[name]["alert_rule_test"]
            if case["alertname"] == alert and duration_seconds(case["eval_time"]) == before
        ]
        assert quiet, f"{name}: {alert} not checked one evaluation earlier"
        assert not quiet[0].get("exp_alerts"), f"{name}: {alert} fires one evaluation earlier"
        never = [
            check
            for check in tests[name].get("promql_expr_test", [])
            if f'alertname="{alert}",alertstate="firing"' in check["expr"]
            and duration_seconds(check["eval_time"]) == before
            and not check["exp_samples"]
        ]
        assert never, f"{name}: no check that {alert} never fired before"


def test_time_to_page_meets_the_bounds_of_the_issue() -> None:
    """A total provisioning outage pages within 3 minutes at interval 20 s (runs failing within the
    interval) and within 8 minutes at 60 s; most nodes failing pages, one node warns, on the same
    clock. With 120 s timeouts at 20 s the first failure alone comes 2 minutes after the fault: that
    figure is stated, not bounded (issue 11's early verdict is meant to shorten it)."""
    covered: set[tuple[str, int, bool]] = set()
    for name, alert, interval, seconds in gendocs.time_to_page():
        if gendocs.SLOW_PATH in name:
            assert seconds <= 35 * 60, name
            continue
        fast = "runs failing within seconds" in name
        covered.add((alert, interval, fast))
        if interval == 60:
            assert seconds <= 8 * 60, name
        if interval == 20 and fast:
            assert seconds <= 3 * 60, name
    expected = {(a, i, f) for a in STREAK_ALERTS for i in gendocs.INTERVALS for f in (True, False)}
    assert expected <= covered, f"no time-to-page case for {sorted(expected - covered)}"


def test_runbook_table_says_when_the_failing_alerts_fire() -> None:
    rows = {
        match.group(1): line
        for line in RUNBOOKS.read_text().splitlines()
        if (match := re.match(r"\| \[(\w+)\]", line))
    }
    cells = gendocs.fires_after()
    for alert in STREAK_ALERTS:
        severity = next(str(r["labels"]["severity"]) for r in alerts() if r["alert"] == alert)
        at20, at60 = cells[(alert, severity)]
        expected = f"it fires after 20 s: {at20} and 60 s: {at60}"
        assert f"20 s: {at20}" in rows[alert], f"docs/runbooks.md's row for {alert} must say {expected}"
        assert f"60 s: {at60}" in rows[alert], f"docs/runbooks.md's row for {alert} must say {expected}"


# -- the dashboard ---------------------------------------------------------------------------------


def test_dashboard_uses_the_templated_datasource_and_variables() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["schemaVersion"] >= 36
    assert board.get("uid")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"storage_class", "probe"} <= set(variables)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
