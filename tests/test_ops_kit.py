"""The operations kit (ops/): the Prometheus alerting rules pass `promtool check rules` and
their unit tests (`promtool test rules`), every metric the rules and the Grafana dashboard name
is one the daemon serves, and the daemon's /metrics passes `promtool check metrics`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from reporthubd import metrics

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "ops" / "prometheus" / "reporthubd-rules.yml"
RULE_TESTS = REPO / "ops" / "prometheus" / "reporthubd-rules.test.yml"
DASHBOARD = REPO / "ops" / "grafana" / "reporthubd-dashboard.json"
RUNBOOKS = REPO / "ops" / "runbooks.md"
ALERTS = {
    "ReporthubdStoreDown",
    "ReporthubdFiresLate",
    "ReporthubdFiresMissed",
    "ReporthubdRunsFailing",
    "ReporthubdRetriesPilingUp",
    "ReporthubdJournalNotDraining",
    "ReporthubdHeartbeatStale",
}
METRIC = re.compile(r"\breporthubd_[a-z_]+")


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("no promtool: scripts/install-test-deps.sh installs Debian's prometheus")
    return found


def _served_names() -> set[str]:
    """Every sample name the daemon's registry exposes (with _total, _bucket, _count, _sum)."""
    names = set()
    for family in metrics.REGISTRY.collect():
        names.add(family.name)
        names |= {sample.name for sample in family.samples}
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_count", "_sum")}
    return names


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout, result.stdout


def test_promtool_runs_the_rule_unit_tests() -> None:
    result = subprocess.run(
        [_promtool(), "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=RULE_TESTS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text(encoding="utf-8")))
    assert tested == ALERTS, "every alert has a unit test"


def test_every_alert_has_its_runbook() -> None:
    rules = RULES.read_text(encoding="utf-8")
    assert set(re.findall(r"alert: (\w+)", rules)) == ALERTS
    runbooks = RUNBOOKS.read_text(encoding="utf-8")
    for anchor in re.findall(r'runbook_url: "ops/runbooks.md#([a-z-]+)"', rules):
        assert f"\n## {anchor}\n" in runbooks, anchor
    assert len(re.findall(r"runbook_url:", rules)) == len(ALERTS)


def test_rules_and_dashboard_name_only_served_metrics() -> None:
    served = _served_names()
    named = set(METRIC.findall(RULES.read_text(encoding="utf-8")))
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 20
    for expr in exprs:
        named |= set(METRIC.findall(expr))
    assert named - served == set(), "names the daemon does not serve"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert {"datasource", "instance"} <= {v["name"] for v in dashboard["templating"]["list"]}


def test_promtool_checks_the_served_metrics() -> None:
    result = subprocess.run(
        [_promtool(), "check", "metrics"],
        input=metrics.render(),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
