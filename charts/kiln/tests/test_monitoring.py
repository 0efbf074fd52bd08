"""The Grafana dashboard and the PrometheusRule name only metrics the controller serves
(controller/kiln-controller/src/metrics.rs), with their labels, and the dashboard covers
every kiln metric."""

from __future__ import annotations

import json
import re

from kilntest import CHART, ROOT, only, objects, test
from test_chart import NON_DEFAULT


def served() -> dict[str, set[str]]:
    """Series names /metrics serves, with the labels each may carry, from metrics.rs."""
    src = (ROOT / "controller/kiln-controller/src/metrics.rs").read_text()
    labels_of = {}
    for name, body in re.findall(r"struct (\w+Labels) \{([^}]*)\}", src):
        labels_of[name] = set(re.findall(r"(\w+):", body))
    fields = dict(re.findall(r"^\s+(\w+): (?:HistogramFamily<|Family<)(\w+)", src, re.M))
    out: dict[str, set[str]] = {}
    for kind, name, field in re.findall(
            r"registry\.(register(?:_with_unit)?)\(\s*\"(\w+)\",.*?(?:Unit::Seconds,\s*)?(\w+)\.clone\(\)", src, re.S):
        labels = labels_of.get(fields.get(field, ""), set())
        base = f"kiln_{name}"
        if "HistogramFamily" in src.split(f"{field}:")[1].split("\n")[0] or kind == "register_with_unit":
            base += "_seconds"
            for suffix in ["_bucket", "_sum", "_count"]:
                out[base + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
        elif re.search(rf"{field}: Family<\w+, Counter>", src):
            out[base + "_total"] = labels
        else:
            out[base] = labels
    assert {"kiln_leader", "kiln_promotions_total", "kiln_rollbacks_total", "kiln_breach_detection_seconds_bucket",
            "kiln_promotions_in_phase", "kiln_change_failure_ratio"} <= set(out), sorted(out)
    return out


SCRAPE_LABELS = {"job", "namespace", "pod", "instance", "service", "container", "endpoint"}


def check_exprs(exprs: list[str], where: str) -> set[str]:
    metrics = served()
    used = set()
    for expr in exprs:
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), (where, expr)
        for name, sel in re.findall(r"\b(kiln_\w+)(\{[^}]*\})?", expr):
            assert name in metrics, f"{where}: {name} is not served by kiln-controller: {expr}"
            used.add(name)
            for label in re.findall(r"(\w+)\s*(?:=~|!=|!~|=)", sel or ""):
                assert label in metrics[name] | SCRAPE_LABELS, f"{where}: {name} has no label {label}"
        for label in re.findall(r"by \(([^)]*)\)", expr):
            for l in [x.strip() for x in label.split(",")]:
                assert l in {"le", "environment", "result", "cause", "kind", "error", "phase", "pod"}, (where, l)
    return used


@test
def dashboard_queries_name_served_metrics_and_cover_them_all():
    dash = json.loads((CHART / "dashboards/kiln-controller.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    used = check_exprs(exprs, "dashboard")
    families = {re.sub(r"_(bucket|sum|count)$", "", m) for m in served()}
    covered = {re.sub(r"_(bucket|sum|count)$", "", m) for m in used}
    assert families <= covered, f"metrics without a panel: {sorted(families - covered)}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "job", "environment"}
    for p in dash["panels"]:
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]


@test
def prometheus_rules_name_served_metrics_and_select_this_install():
    rule = only(objects(NON_DEFAULT), "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"KilnControllerDown", "KilnNoLeader", "KilnTwoLeaders", "KilnRollbackStuck",
            "KilnPromotionDeployingTooLong", "KilnRollback"} <= set(alerts), sorted(alerts)
    check_exprs([a["expr"] for a in alerts.values()], "PrometheusRule")
    for name, a in alerts.items():
        assert 'job="kiln",namespace="kiln-system"' in a["expr"], (name, a["expr"])
        assert a["labels"]["team"] == "platform" and a["labels"]["severity"] in {"critical", "warning", "info"}
        assert a["annotations"]["summary"], name
    assert alerts["KilnRollbackStuck"]["for"] == "10m"
    assert 'phase="RollingBack"' in alerts["KilnRollbackStuck"]["expr"]
    assert alerts["KilnPromotionDeployingTooLong"]["for"] == "30m"
    assert "{{ $labels.environment }}" in alerts["KilnRollback"]["annotations"]["summary"]
