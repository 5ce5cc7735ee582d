"""The alert rules, their tests and the dashboard speak about the metrics volprobe really exports.

Every metric name in `rules/*.yaml` (expressions), `rules/tests/*.yaml` (input series and
expressions) and `dashboards/volprobe.json` (every `expr`, and the variables' queries) is
extracted with a small PromQL tokenizer, sample names (`_bucket`, `_sum`, `_count`, `_total`)
are mapped back to their family, and then:

(a) every `volprobe_*` name is a sample volprobe exports (`volprobe.metrics.METRICS`), with
    label matchers only on labels it has; every other name is a recording rule defined in
    `rules/` or on the explicit allow-list of metrics from elsewhere (`EXTERNAL`);
(b) every metric in `METRICS` is used by the dashboard or a rule, and documented in
    docs/metrics.md: none is left unused or undocumented;
(c) every `kind`, `result`, `phase`, `reason` (and `op`) label value written literally exists in
    `volprobe.reasons` (or `volprobe.reports.IO_OPS`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.monitoring import DASHBOARD, REPO, RULE_FILES, RULE_TESTS, walk
from volprobe import kinds
from volprobe.contract import reasons
from volprobe.contract.report import IO_OPS
from volprobe.runtime.metrics import METRICS, MetricSpec

METRICS_DOC = REPO / "docs" / "metrics.md"

# Metrics the rules and their tests use that volprobe does not export. Keep this list exact:
# a name nobody uses any more fails `test_external_allow_list_is_exact`.
EXTERNAL: dict[str, str] = {
    # kubelet (/metrics): volume stats of mounted filesystem volumes, by namespace and claim.
    "kubelet_volume_stats_available_bytes": "kubelet",
    "kubelet_volume_stats_capacity_bytes": "kubelet",
    "kubelet_volume_stats_used_bytes": "kubelet",
    "kubelet_volume_stats_inodes": "kubelet",
    "kubelet_volume_stats_inodes_free": "kubelet",
    "kubelet_volume_stats_inodes_used": "kubelet",
    # kube-state-metrics: which claims are ReadOnlyMany or block volumes (capacity exclusions).
    "kube_persistentvolumeclaim_access_mode": "kube-state-metrics",
    "kube_persistentvolumeclaim_info": "kube-state-metrics",
    "kube_persistentvolume_volume_mode": "kube-state-metrics",
    # Prometheus itself: the firing-alerts table of the dashboard.
    "ALERTS": "prometheus",
}

# Labels Prometheus adds to every scraped series (target labels), allowed on any matcher.
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "service", "endpoint", "container"})

# -- a small PromQL tokenizer ----------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


AGGREGATIONS = _words("sum min max avg group stddev stdvar count count_values bottomk topk quantile")
FUNCTIONS = _words(
    """
    abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp
    clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month
    deg delta deriv exp floor histogram_count histogram_fraction histogram_quantile histogram_sum
    holt_winters hour idelta increase irate label_join label_replace last_over_time ln log10 log2
    max_over_time min_over_time minute month pi predict_linear present_over_time quantile_over_time
    rad rate resets round scalar sgn sin sinh sort sort_desc sqrt stddev_over_time stdvar_over_time
    sum_over_time tan tanh time timestamp vector year
    """
)
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"and", "or", "unless", "atan2", "bool", "offset", "inf", "nan", "start", "end"})

TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<variable>\$\{[^}]*\}|\$\w+)
  | (?P<number>(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?:ms|[smhdwy])?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^=<>,(){}@])
    """,
    re.VERBOSE,
)


class PromQLError(ValueError):
    pass


@dataclass(frozen=True)
class Token:
    kind: str
    text: str


@dataclass(frozen=True)
class Matcher:
    metric: str | None
    label: str
    op: str
    value: str


@dataclass
class Parsed:
    names: list[str] = field(default_factory=list)
    matchers: list[Matcher] = field(default_factory=list)


def tokenize(expr: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(expr):
        match = TOKEN.match(expr, position)
        if match is None:
            raise PromQLError(f"cannot tokenize {expr[position : position + 20]!r} in {expr!r}")
        position = match.end()
        kind = match.lastgroup
        assert kind is not None
        if kind not in ("space", "comment"):
            tokens.append(Token(kind, match.group()))
    return tokens


def _unquote(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1]
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def parse(expr: str) -> Parsed:
    """Metric names and label matchers of a PromQL expression (or a series in promtool notation)."""
    tokens = tokenize(expr)
    parsed = Parsed()
    index = 0

    def peek(offset: int = 0) -> Token | None:
        at = index + offset
        return tokens[at] if at < len(tokens) else None

    while index < len(tokens):
        token = tokens[index]
        if token.kind == "ident":
            following = peek(1)
            word = token.text
            if word in GROUPING:
                index += 1
                if following is not None and following.text == "(":
                    # A label list: skip to its closing parenthesis.
                    while index < len(tokens) and tokens[index].text != ")":
                        index += 1
            elif word in AGGREGATIONS or word.lower() in KEYWORDS:
                pass
            elif following is not None and following.text == "(":
                if word not in FUNCTIONS:
                    raise PromQLError(f"unknown function {word!r} in {expr!r}")
            else:
                parsed.names.append(word)
                if following is not None and following.text == "{":
                    index = _matchers(tokens, index + 1, word, parsed, expr)
                    continue
        elif token.text == "{":
            index = _matchers(tokens, index, None, parsed, expr)
            continue
        index += 1
    return parsed


def _matchers(tokens: list[Token], index: int, metric: str | None, parsed: Parsed, expr: str) -> int:
    """Read `{label op "value", ...}` starting at `{`; return the index after `}`."""
    index += 1
    found: list[Matcher] = []
    while index < len(tokens) and tokens[index].text != "}":
        if tokens[index].text == ",":
            index += 1
            continue
        try:
            label, op, value = tokens[index : index + 3]
        except ValueError:
            raise PromQLError(f"unterminated label matchers in {expr!r}") from None
        if label.kind != "ident" or op.text not in ("=", "!=", "=~", "!~") or value.kind != "string":
            raise PromQLError(f"bad label matcher {label.text}{op.text}{value.text} in {expr!r}")
        found.append(Matcher(metric, label.text, op.text, _unquote(value.text)))
        index += 3
    if index >= len(tokens):
        raise PromQLError(f"unterminated label matchers in {expr!r}")
    if metric is None:
        names = [m.value for m in found if m.label == "__name__" and m.op == "="]
        metric = names[0] if names else None
        if metric is not None:
            parsed.names.append(metric)
        found = [Matcher(metric, m.label, m.op, m.value) for m in found]
    parsed.matchers.extend(found)
    return index + 1


def grafana_query(query: str) -> str | None:
    """The PromQL inside a Grafana Prometheus variable query, if it has one."""
    query = query.strip()
    match = re.fullmatch(r"label_values\((.*),\s*\w+\s*\)", query, re.DOTALL)
    if match:
        return match.group(1)
    match = re.fullmatch(r"query_result\((.*)\)", query, re.DOTALL)
    if match:
        return match.group(1)
    if re.fullmatch(r"(label_values\(\s*\w+\s*\)|label_names\(\)|metrics\(.*\))", query, re.DOTALL):
        return None
    return query


# -- what the files use ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Use:
    where: str
    expr: str


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in RULE_FILES:
        for group in _load_yaml(path)["groups"]:
            for rule in group["rules"]:
                yield path, rule


def rule_exprs() -> list[Use]:
    return [
        Use(f"{path.name}: {rule.get('alert') or rule.get('record')}", str(rule["expr"]))
        for path, rule in rules()
    ]


def recorded_names() -> set[str]:
    return {str(rule["record"]) for _, rule in rules() if "record" in rule}


def rule_test_exprs() -> list[Use]:
    found: list[Use] = []
    for path in RULE_TESTS:
        for number, test in enumerate(_load_yaml(path)["tests"]):
            where = f"{path.name} test {number} ({test.get('name', '')})"
            found += [Use(f"{where} input", str(s["series"])) for s in test.get("input_series", [])]
            found += [Use(f"{where} expr", str(t["expr"])) for t in test.get("promql_expr_test", [])]
    return found


def rule_test_alert_labels() -> Iterator[tuple[str, str, str]]:
    for path in RULE_TESTS:
        for test in _load_yaml(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                for alert in case.get("exp_alerts") or []:
                    for label, value in (alert.get("exp_labels") or {}).items():
                        yield f"{path.name} {case['alertname']}", str(label), str(value)


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_exprs() -> list[Use]:
    board = dashboard()
    found = [Use("dashboard panel", str(value)) for key, value in walk(board["panels"]) if key == "expr"]
    for variable in board["templating"]["list"]:
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        text = query.get("query", "") if isinstance(query, dict) else str(query)
        promql = grafana_query(text)
        if promql:
            found.append(Use(f"dashboard variable {variable['name']}", promql))
    return found


# -- the metrics volprobe exports ------------------------------------------------------------------


def samples() -> dict[str, MetricSpec]:
    """Every sample name volprobe exports, mapped to its metric."""
    names: dict[str, MetricSpec] = {}
    for spec in METRICS:
        if spec.type == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                names[spec.name + suffix] = spec
        else:
            names[spec.name] = spec
    return names


def family(name: str) -> MetricSpec | None:
    return samples().get(name)


VOCABULARY: dict[str, tuple[type[StrEnum], ...]] = {
    "result": (reasons.Result,),
    "phase": (reasons.Phase,),
    "reason": (reasons.Reason,),
}


def allowed_values(metric: str | None, label: str) -> set[str] | None:
    if label == "op":
        return set(IO_OPS)
    if label == "kind":
        return set(kinds.BY_NAME)
    if label == "reason" and metric == "volprobe_node_skipped":
        return {m.value for m in reasons.SkipReason}
    if label == "reason" and metric is None:
        return {m.value for m in reasons.Reason} | {m.value for m in reasons.SkipReason}
    enums = VOCABULARY.get(label)
    if enums is None:
        return None
    return {member.value for enum in enums for member in enum}


def literal_values(op: str, value: str) -> list[str]:
    """The exact values a matcher names; none when it is a real regex or a Grafana variable."""
    if "$" in value:
        return []
    if op in ("=", "!="):
        return [value]
    alternatives = value.split("|")
    if all(re.fullmatch(r"[A-Za-z0-9_\-]+", a) for a in alternatives):
        return alternatives
    return []


def all_uses() -> list[Use]:
    return rule_exprs() + rule_test_exprs() + dashboard_exprs()


# -- the tokenizer, tested a little ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (probe, node) (rate(volprobe_probe_runs_total{result="failure"}[5m]))',
            ["volprobe_probe_runs_total"],
        ),
        ("a / on (x) group_left (y, z) b offset 5m > bool 3", ["a", "b"]),
        ("a * on (x) group_left () b", ["a", "b"]),
        (
            "histogram_quantile(0.99, sum by (le) (rate(x_bucket{op=~'a|b'}[$__rate_interval])))",
            ["x_bucket"],
        ),
        ('label_replace(m{v="Block"} == 1, "volumename", "$1", "persistentvolume", "(.+)")', ["m"]),
        ("absent(volprobe_leader == 1)", ["volprobe_leader"]),
        ("quantile_over_time(0.5, level:metric:p99_10m[1d]) > 3 * 4 * 24 * 3600", ["level:metric:p99_10m"]),
        ("sum without (instance) (x) # sum by (y) (not_a_metric)\n unless y", ["x", "y"]),
        ('topk(10, count_values("v", x)) and on () count(up offset 30m) > 0', ["x", "up"]),
        ('{__name__="x", job="j"}', ["x"]),
        ("min_over_time(x[6h:5m]) == 1e3 or -Inf < y", ["x", "y"]),
        ('volprobe_probe_runs_total{job="volprobe",node="",kind="provision"}', ["volprobe_probe_runs_total"]),
    ],
)
def test_tokenizer_finds_metric_names(expr: str, names: list[str]) -> None:
    assert parse(expr).names == names


def test_tokenizer_reads_label_matchers() -> None:
    parsed = parse('sum by (reason) (increase(f_total{probe="p", reason=~"a|b", node!=""}[15m]))')
    assert parsed.matchers == [
        Matcher("f_total", "probe", "=", "p"),
        Matcher("f_total", "reason", "=~", "a|b"),
        Matcher("f_total", "node", "!=", ""),
    ]
    assert literal_values("=~", "a|b") == ["a", "b"]
    assert literal_values("=~", "Volprobe.*") == []
    assert literal_values("=~", "$phase") == []


def test_tokenizer_refuses_unknown_functions_and_bad_matchers() -> None:
    with pytest.raises(PromQLError, match="unknown function"):
        parse("rat(x[5m])")
    with pytest.raises(PromQLError, match="bad label matcher"):
        parse("x{a=b}")
    with pytest.raises(PromQLError, match="unterminated"):
        parse('x{a="b"')


def test_grafana_variable_queries() -> None:
    assert grafana_query('label_values(x{a=~"$b"}, probe)') == 'x{a=~"$b"}'
    assert grafana_query("label_values(probe)") is None
    assert grafana_query("query_result(sum(x))") == "sum(x)"


# -- the checks ------------------------------------------------------------------------------------


def test_files_exist_and_have_expressions() -> None:
    assert RULE_FILES, "no rules/*.yaml"
    assert RULE_TESTS, "no rules/tests/*.yaml"
    assert rule_exprs()
    assert rule_test_exprs()
    assert dashboard_exprs()


def test_every_name_is_a_volprobe_sample_a_recording_rule_or_an_allowed_external_metric() -> None:
    known = samples()
    recorded = recorded_names()
    problems: list[str] = []
    for use in all_uses():
        for name in parse(use.expr).names:
            if name.startswith("volprobe_"):
                if name not in known:
                    problems.append(f"{use.where}: {name} is not exported by volprobe (METRICS)")
            elif ":" in name:
                if name not in recorded:
                    problems.append(f"{use.where}: {name} is not a recording rule in rules/")
            elif name not in EXTERNAL:
                problems.append(f"{use.where}: {name} is neither volprobe's nor on the EXTERNAL allow-list")
    assert not problems, "\n".join(problems)


def test_annotations_name_only_real_metrics() -> None:
    known = samples()
    problems = [
        f"{rule['alert']}: {name}"
        for _, rule in rules()
        if "alert" in rule
        for text in rule.get("annotations", {}).values()
        for name in re.findall(r"\bvolprobe_[a-z_]+", str(text))
        if name not in known
    ]
    assert not problems, problems


def test_external_allow_list_is_exact() -> None:
    used = {name for use in all_uses() for name in parse(use.expr).names}
    assert not set(EXTERNAL) - used, f"allow-listed but unused: {sorted(set(EXTERNAL) - used)}"


def test_recording_rules_are_named_level_metric_operation() -> None:
    for name in recorded_names():
        assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", name), name


def test_every_metric_is_used_by_the_dashboard_or_a_rule() -> None:
    used = {
        spec.name
        for use in rule_exprs() + dashboard_exprs()
        for name in parse(use.expr).names
        if (spec := family(name)) is not None
    }
    unused = [spec.name for spec in METRICS if spec.name not in used]
    assert not unused, f"metrics nobody looks at: {unused}"


def test_every_metric_is_documented() -> None:
    text = METRICS_DOC.read_text()
    missing = [spec.name for spec in METRICS if f"`{spec.name}`" not in text]
    assert not missing, f"not in docs/metrics.md (run `make docs`): {missing}"


def test_label_matchers_on_volprobe_metrics_name_labels_they_have() -> None:
    problems: list[str] = []
    for use in rule_exprs() + dashboard_exprs():
        for matcher in parse(use.expr).matchers:
            spec = family(matcher.metric) if matcher.metric else None
            if spec is None or matcher.metric is None:
                continue
            labels = (
                set(spec.labels) | TARGET_LABELS | ({"le"} if matcher.metric.endswith("_bucket") else set())
            )
            if matcher.label not in labels:
                problems.append(f"{use.where}: {matcher.metric} has no label {matcher.label!r}")
    assert not problems, "\n".join(problems)


def test_test_series_have_exactly_the_labels_volprobe_exports() -> None:
    problems: list[str] = []
    for use in rule_test_exprs():
        if not use.where.endswith("input"):
            continue
        parsed = parse(use.expr)
        name = parsed.names[0]
        spec = family(name)
        if spec is None:
            continue
        labels = {m.label for m in parsed.matchers} - TARGET_LABELS
        expected = set(spec.labels) | ({"le"} if name.endswith("_bucket") else set())
        if labels != expected:
            problems.append(
                f"{use.where}: {name} has labels {sorted(labels)}, volprobe exports {sorted(expected)}"
            )
    assert not problems, "\n".join(problems)


def test_label_values_come_from_the_vocabulary() -> None:
    problems: list[str] = []
    for use in all_uses():
        for matcher in parse(use.expr).matchers:
            allowed = allowed_values(matcher.metric, matcher.label)
            if allowed is None or matcher.metric in EXTERNAL:
                continue
            for value in literal_values(matcher.op, matcher.value):
                if value == "" and matcher.label in ("node",):
                    continue
                if value not in allowed:
                    problems.append(f"{use.where}: {matcher.label}={value!r} is not in volprobe.reasons")
    for where, label, value in rule_test_alert_labels():
        allowed = allowed_values(None, label)
        if allowed is not None and value not in allowed:
            problems.append(f"{where}: expected label {label}={value!r} is not in volprobe.reasons")
    for variable in dashboard()["templating"]["list"]:
        allowed = allowed_values(None, variable["name"])
        if variable.get("type") == "custom" and allowed is not None:
            for value in str(variable["query"]).split(","):
                if value.strip() not in allowed:
                    problems.append(
                        f"dashboard variable {variable['name']}: {value!r} is not in volprobe.reasons"
                    )
    assert not problems, "\n".join(problems)
