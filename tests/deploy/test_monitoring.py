"""deploy/monitoring/ (issue 12): the Grafana dashboard and the Prometheus alert rules are
well-formed, every PromQL expression in them parses (promql-parser: the Python binding of the
Rust PromQL parser, which also checks argument types), and every metric, label and bucket bound
they name is one the service exposes. A renamed metric or label fails here, not on a blank
panel or a silent alert."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser as pq
import pytest
import yaml
from prometheus_client.metrics import Counter, Gauge, Histogram, MetricWrapperBase
from prometheus_client.utils import floatToGoString

from cds_service import metrics

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
RULES = MONITORING / "alert-rules.yaml"
RULE_TESTS = MONITORING / "alert-rules.test.yaml"

# Added by Prometheus to every series it scrapes; `up` is its own series per target.
TARGET_LABELS = frozenset({"job", "instance"})
# Grafana's own variables, replaced as Grafana would before the query is sent.
GRAFANA_VARIABLES = {"__rate_interval": "1m", "__range": "6h", "__interval": "30s"}
RATES = frozenset({"rate", "irate", "increase"})
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|([A-Za-z_]\w*))")
_LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_ANNOTATION_LABEL = re.compile(r"\$labels\.(\w+)")
# Prometheus' duration syntax (model.ParseDuration): units largest first, "0s" allowed.
_DURATION = re.compile(r"0|(?=\d)(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?")


@dataclass(frozen=True)
class Series:
    """One series name as Prometheus stores it, from a family the service registers."""

    labels: frozenset[str]
    counter: bool  # rate() and increase() apply
    bounds: frozenset[str] = frozenset()  # the `le` values of a histogram's _bucket series


def _collectors() -> dict[str, MetricWrapperBase]:
    return {c._name: c for c in vars(metrics).values() if isinstance(c, MetricWrapperBase)}


def exposed() -> dict[str, Series]:
    """Every series the service's registry serves at /metrics, with its labels."""
    collectors = _collectors()
    found = {"up": Series(TARGET_LABELS, counter=False)}
    for family in metrics.REGISTRY.collect():
        if family.name.startswith(("process_", "python_")):
            continue  # the process collector's, not the service's own
        collector = collectors.get(family.name)
        assert collector is not None, f"{family.name}: registered but not a module attribute"
        labels = frozenset(collector._labelnames) | TARGET_LABELS
        if family.type == "counter" and isinstance(collector, Counter):
            found[family.name + "_total"] = Series(labels, counter=True)
        elif family.type == "gauge" and isinstance(collector, Gauge):
            found[family.name] = Series(labels, counter=False)
        elif family.type == "histogram" and isinstance(collector, Histogram):
            bounds = frozenset(
                floatToGoString(b)  # type: ignore[no-untyped-call]
                for b in collector._upper_bounds
            )
            found[family.name + "_bucket"] = Series(labels | {"le"}, counter=True, bounds=bounds)
            found[family.name + "_sum"] = Series(labels, counter=True)
            found[family.name + "_count"] = Series(labels, counter=True)
        else:
            raise AssertionError(f"{family.name}: type {family.type} is not handled here")
    return found


EXPOSED = exposed()


def _scalar(node: pq.Expr) -> bool:
    if isinstance(node, pq.ParenExpr | pq.UnaryExpr):
        return _scalar(node.expr)
    return isinstance(node, pq.NumberLiteral)


def labels_of(node: pq.Expr, where: str) -> frozenset[str]:
    """The labels of ``node``'s result. Asserts on the way that every metric it selects is
    exposed, that every matcher, grouping and matching label is on what it applies to, that
    rate() and increase() read counters, and that histogram_quantile() gets its ``le``."""
    if isinstance(node, pq.VectorSelector):
        assert node.name in EXPOSED, f"{where}: {node.name} is not a series the service exposes"
        series = EXPOSED[node.name]
        for matcher in node.matchers.matchers:
            assert matcher.name in series.labels, f"{where}: {node.name} has no {matcher.name}"
            if matcher.name == "le" and matcher.op == pq.MatchOp.Equal:
                assert matcher.value in series.bounds, (
                    f"{where}: {node.name} has no bucket le={matcher.value!r} "
                    f"(bounds: {sorted(series.bounds)})"
                )
        return series.labels
    if isinstance(node, pq.MatrixSelector):
        return labels_of(node.vector_selector, where)
    if isinstance(node, pq.ParenExpr | pq.UnaryExpr | pq.SubqueryExpr):
        return labels_of(node.expr, where)
    if isinstance(node, pq.NumberLiteral | pq.StringLiteral):
        return frozenset()
    if isinstance(node, pq.Call):
        return _call_labels(node, where)
    if isinstance(node, pq.AggregateExpr):
        inner = labels_of(node.expr, where)
        if node.modifier is None:
            return frozenset()
        grouping = frozenset(node.modifier.labels)
        assert grouping <= inner, f"{where}: grouping by {sorted(grouping - inner)}: no such label"
        return grouping if node.modifier.type == pq.AggModifierType.By else inner - grouping
    if isinstance(node, pq.BinaryExpr):
        lhs, rhs = labels_of(node.lhs, where), labels_of(node.rhs, where)
        if _scalar(node.lhs):
            return rhs
        if _scalar(node.rhs):
            return lhs
        modifier = node.modifier
        extra: frozenset[str] = frozenset()
        if modifier is not None:
            if modifier.matching is not None:
                on = frozenset(modifier.matching.labels)
                if modifier.matching.type == pq.LabelModifierType.Include:
                    missing = (on - lhs) | (on - rhs)
                    assert not missing, (
                        f"{where}: on ({', '.join(sorted(missing))}): not on both sides"
                    )
                else:
                    assert on <= lhs | rhs, (
                        f"{where}: ignoring {sorted(on - lhs - rhs)}: no such label"
                    )
            extra = frozenset(modifier.group_labels or ())
            if modifier.card == pq.VectorMatchCardinality.OneToMany:
                return rhs | extra
        if str(node.op) == "or":
            return lhs | rhs
        return lhs | extra
    raise AssertionError(f"{where}: {type(node).__name__} is not handled here")


def _call_labels(node: pq.Call, where: str) -> frozenset[str]:
    name = node.func.name
    args = [labels_of(arg, where) for arg in node.args]
    if name in RATES:
        matrix = node.args[0]
        assert isinstance(matrix, pq.MatrixSelector), f"{where}: {name}() over a subquery"
        selected = matrix.vector_selector.name
        assert selected is not None
        assert EXPOSED[selected].counter, f"{where}: {name}() over {selected}, not a counter"
    if name == "histogram_quantile":
        assert "le" in args[1], f"{where}: histogram_quantile() without `le` in its buckets"
        return args[1] - {"le"}
    if name == "label_replace":
        destination, source = node.args[1], node.args[3]
        assert isinstance(destination, pq.StringLiteral)
        assert isinstance(source, pq.StringLiteral)
        assert source.val in args[0], f"{where}: label_replace() from {source.val}: no such label"
        return args[0] | {destination.val}
    if name == "absent":
        selector = node.args[0]
        assert isinstance(selector, pq.VectorSelector)
        return frozenset(m.name for m in selector.matchers.matchers if m.op == pq.MatchOp.Equal)
    vectors = [labels for arg, labels in zip(node.args, args, strict=True) if not _scalar(arg)]
    return vectors[0] if vectors else frozenset()


def check(expr: str, where: str) -> frozenset[str]:
    """Parse ``expr`` and check what it names; returns its result's labels."""
    try:
        tree = pq.parse(expr)
    except ValueError as exc:
        raise AssertionError(f"{where}: does not parse: {exc}\n{expr}") from None
    return labels_of(tree, where)


# ---- The dashboard ---------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def variables(board: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board["templating"]["list"]}


def substituted(expr: str, board: Mapping[str, Any]) -> str:
    """``expr`` with Grafana's variables replaced (the dashboard's by their "All" value)."""
    values = dict(GRAFANA_VARIABLES)
    for name, variable in variables(board).items():
        values[name] = variable.get("allValue") or "x"

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in values, f"${name} is not a variable of the dashboard or of Grafana"
        return values[name]

    return _VARIABLE.sub(value, expr)


def queries() -> list[tuple[str, str, str]]:
    """(where, expression, legend) of every query of every panel."""
    board = dashboard()
    return [
        (
            f"panel {panel['id']} {panel['title']!r} query {target['refId']}",
            target["expr"],
            target.get("legendFormat", ""),
        )
        for panel in all_panels(board["panels"])
        for target in panel.get("targets", [])
    ]


def test_dashboard_is_grafana_json_with_unique_ids_and_no_overlapping_panels() -> None:
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    assert board["uid"]
    assert board["title"]
    panels = list(all_panels(board["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    cells: dict[tuple[int, int], int] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid), panel["title"]
        assert all(isinstance(grid[k], int) and grid[k] >= 0 for k in "hwxy"), panel["title"]
        assert grid["w"] >= 1, panel["title"]
        assert grid["h"] >= 1, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"panels {cells[x, y]} and {panel['id']} overlap"
                cells[x, y] = panel["id"]


def test_every_panel_has_the_datasource_variable_a_description_and_queries() -> None:
    board = dashboard()
    datasource = variables(board)["datasource"]
    assert datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"
    chosen = {"type": "prometheus", "uid": "${datasource}"}
    panels = [p for p in all_panels(board["panels"]) if p["type"] != "row"]
    assert len(panels) >= 14
    for panel in panels:
        title = panel["title"]
        assert panel["datasource"] == chosen, title
        assert len(panel.get("description", "")) >= 40, f"{title}: say what to read from it"
        targets = panel.get("targets", [])
        assert targets, f"{title}: no query"
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), title
        for target in targets:
            assert target["datasource"] == chosen, title
            assert target["expr"].strip(), title
    for row in (p for p in all_panels(board["panels"]) if p["type"] == "row"):
        assert not row.get("targets"), f"row {row['title']} has queries"


def test_the_service_variable_lists_the_services_that_answered() -> None:
    service = variables(dashboard())["service"]
    assert service["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    query = service["query"]["query"] if isinstance(service["query"], dict) else service["query"]
    assert query == service["definition"]
    found = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
    assert found, query
    metric, label = found.groups()
    assert metric in EXPOSED, query
    assert label in EXPOSED[metric].labels, query
    assert label == "service"
    assert service["multi"]
    assert service["includeAll"]
    assert service["allValue"] == ".*"


@pytest.mark.parametrize(
    ("where", "expr", "legend"), [pytest.param(*q, id=q[0]) for q in queries()]
)
def test_every_dashboard_query_parses_and_names_what_the_service_exposes(
    where: str, expr: str, legend: str
) -> None:
    labels = check(substituted(expr, dashboard()), where)
    for name in _LEGEND_LABEL.findall(legend):
        assert name in labels, f"{where}: legend {{{{{name}}}}}: the result has {sorted(labels)}"


def test_every_metric_the_service_exposes_has_a_panel() -> None:
    used: set[str] = set()

    def collect(node: pq.Expr) -> None:
        if isinstance(node, pq.VectorSelector) and node.name:
            used.add(node.name)

    for _, expr, _ in queries():
        pq.walk(pq.parse(substituted(expr, dashboard())), pre_visit=collect)
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used}
    families = {
        f.name for f in metrics.REGISTRY.collect() if not f.name.startswith(("process_", "python_"))
    }
    assert len(families) >= 12
    assert families - shown == set()


def test_the_latency_panels_use_the_service_s_own_thresholds() -> None:
    """The 500 ms and 5 s shares read exact bucket bounds, and the p99 line is drawn at 0.5 s."""
    texts = " ".join(expr for _, expr, _ in queries())
    assert 'cds_hook_request_duration_seconds_bucket{service=~"$service", le="0.5"}' in texts
    assert 'cds_hook_request_duration_seconds_bucket{service=~"$service", le="5.0"}' in texts
    latency = next(
        p for p in all_panels(dashboard()["panels"]) if p["title"].startswith("Hook latency")
    )
    steps = latency["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 0.5]


# ---- The alert rules -------------------------------------------------------------------------


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert set(data) == {"groups"}
    found: list[dict[str, Any]] = []
    for group in data["groups"]:
        assert group["name"], group
        assert group["rules"], group
        found.extend(group["rules"])
    return found


def alert(name: str) -> dict[str, Any]:
    return next(r for r in rules() if r["alert"] == name)


def test_every_alert_has_an_expression_a_duration_a_severity_and_a_runbook() -> None:
    found = rules()
    assert len(found) >= 6
    names = [r.get("alert") for r in found]
    assert len(names) == len(set(names)), names
    for rule in found:
        assert {"alert", "expr", "for", "labels", "annotations"} <= set(rule), rule
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        assert isinstance(rule["for"], str), rule["alert"]
        assert _DURATION.fullmatch(rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        notes = rule["annotations"]
        for key in ("summary", "description", "runbook"):
            assert isinstance(notes.get(key), str), (rule["alert"], key)
            assert notes[key].strip(), (rule["alert"], key)


@pytest.mark.parametrize("rule", rules(), ids=lambda r: str(r["alert"]))
def test_every_alert_expression_parses_and_names_what_the_service_exposes(
    rule: dict[str, Any],
) -> None:
    labels = check(rule["expr"], rule["alert"])
    for text in rule["annotations"].values():
        for name in _ANNOTATION_LABEL.findall(text):
            assert name in labels, (
                f"{rule['alert']}: $labels.{name}: the result has {sorted(labels)}"
            )


def _threshold(name: str) -> tuple[pq.Expr, float]:
    tree = pq.parse(alert(name)["expr"])
    assert isinstance(tree, pq.BinaryExpr), name
    assert str(tree.op) == ">", name
    assert isinstance(tree.rhs, pq.NumberLiteral), name
    return tree.lhs, tree.rhs.val


def test_the_alerts_issue_12_asks_for() -> None:
    # p99 latency over 500 ms for 10 minutes, per service.
    p99, limit = _threshold("CdsHookLatencyP99High")
    assert limit == 0.5
    assert alert("CdsHookLatencyP99High")["for"] == "10m"
    assert isinstance(p99, pq.Call)
    assert p99.func.name == "histogram_quantile"
    assert isinstance(p99.args[0], pq.NumberLiteral)
    assert p99.args[0].val == 0.99
    assert check(alert("CdsHookLatencyP99High")["expr"], "p99") == {"service"}
    # 5xx over 1% of calls for 5 minutes.
    ratio, limit = _threshold("CdsHookServerErrorsHigh")
    assert limit == 0.01
    assert alert("CdsHookServerErrorsHigh")["for"] == "5m"
    assert '{status=~"5.."}' in str(ratio)
    # Any FHIR budget exhaustion in 15 minutes: a warning, by budget.
    budget = alert("CdsFhirBudgetExhausted")
    assert budget["labels"]["severity"] == "warning"
    assert "increase(cds_fhir_budget_exhausted_total[15m])" in budget["expr"]
    assert check(budget["expr"], "budget") == {"budget"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian: prometheus) absent")
def test_promtool_accepts_the_rules_and_their_unit_tests() -> None:
    """Prometheus' own checker, where it is installed (not needed by `make test`)."""
    for command in (["check", "rules", str(RULES)], ["test", "rules", str(RULE_TESTS)]):
        result = subprocess.run(
            ["promtool", *command], capture_output=True, text=True, check=False, cwd=MONITORING
        )
        assert result.returncode == 0, result.stdout + result.stderr


# ---- The checker itself ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "complaint"),
    [
        ("sum(rate(cds_hook_requests_total[5m])", "does not parse"),
        ("rate(cds_hook_requests_total)", "does not parse"),
        ("rate(cds_hook_request_total[5m])", "not a series the service exposes"),
        ("rate(cds_cards[5m])", "not a series the service exposes"),
        ('rate(cds_cards_total{card_kind="suspect"}[5m])', "has no card_kind"),
        ("sum by (kind) (rate(cds_feedback_total[5m]))", "grouping by ['kind']"),
        ("rate(cds_hook_requests_in_flight[5m])", "not a counter"),
        (
            "histogram_quantile(0.99, sum by (service) "
            "(rate(cds_hook_request_duration_seconds_bucket[5m])))",
            "without `le`",
        ),
        ('cds_hook_request_duration_seconds_bucket{le="5"}', "no bucket le='5'"),
        (
            "sum(rate(cds_feedback_total[5m])) / on (card_kind) sum(rate(cds_cards_total[5m]))",
            "not on both sides",
        ),
    ],
)
def test_the_checker_catches_real_mistakes(expr: str, complaint: str) -> None:
    with pytest.raises(AssertionError, match=re.escape(complaint)):
        check(expr, "broken")
