"""Alert rules (dashboards/alerts.yml): promtool's own checks and unit tests, and coverage.

`promtool` comes with Debian's `prometheus` package; like the Prometheus integration test,
this installs it when absent and allowed (root with apt-get, as in CI), else skips.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from streams.metrics import Metrics
from tests.integration.prometheus import prometheus_binary

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
RULES = DASHBOARDS / "alerts.yml"
RULE_TESTS = DASHBOARDS / "alerts.test.yml"

# What on-call needs to be told about (issue 12): each must exist and be unit-tested.
REQUIRED = {
    "InvsyncWorkerDown",
    "InvsyncWorkerNotReady",
    "InvsyncConsumerLagGrowing",
    "InvsyncFreshnessBeyondMaxDelay",
    "InvsyncStockoutLatencyHigh",
    "InvsyncDeadLetters",
    "InvsyncDeadLetterRateHigh",
    "InvsyncIncreffRejections",
    "InvsyncIncreffCredentialsRejected",
    "InvsyncMarketplacePushFailing",
    "InvsyncMarketplaceCredentialsRejected",
    "InvsyncReservationsExpiring",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        found = shutil.which("promtool", path=str(Path(prometheus_binary()).parent))
    if found is None:
        pytest.fail("prometheus is installed but promtool is not beside it")
    return found


def run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules() -> list[dict[str, Any]]:
    return [rule for group in load(RULES)["groups"] for rule in group["rules"]]


def test_rules_pass_promtool_check(promtool: str) -> None:
    done = run(promtool, "check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_rule_unit_tests_pass(promtool: str) -> None:
    done = run(promtool, "test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_prometheus_config_loads_the_rules(promtool: str) -> None:
    config = load(DASHBOARDS / "prometheus.yml")
    assert "alerts.yml" in config["rule_files"]
    done = run(promtool, "check", "config", str(DASHBOARDS / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout, done.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    names = {rule["alert"] for rule in rules()}
    assert names >= REQUIRED, f"missing alerts {sorted(REQUIRED - names)}"
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert names <= firing, f"no test where these fire: {sorted(names - firing)}"
    assert names <= quiet, f"no test where these stay quiet: {sorted(names - quiet)}"


def test_every_alert_has_a_severity_and_a_summary() -> None:
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_rules_query_only_metrics_the_worker_exports() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    exported = {family.name for family in registry.collect()}
    for rule in rules():
        for name in re.findall(r"\binvsync_[a-z_]+", rule["expr"]):
            base = re.sub(r"_(total|bucket|sum|count)$", "", name)
            assert base in exported, f"{rule['alert']}: {name} is not a worker metric"
