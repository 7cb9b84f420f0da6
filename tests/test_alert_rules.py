"""The alert rules' shape, without a server: rendered, documented, tested, routed.

promtool itself runs the rules' unit tests and amtool the Alertmanager config
(tests/test_infrastructure_static.py, marker `infra`); the rules fire for real
in tests/test_alerting.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from platform_native import alert_rules

from .conftest import REPO

RUNBOOK = REPO / "docs" / "runbook.md"
UNIT_TESTS = alert_rules.ALERTING / "tests.yml"
ALERTMANAGER = REPO / "infrastructure" / "alertmanager" / "alertmanager.yml"
SEVERITIES = {"critical", "warning"}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alerting_rules() -> list[dict[str, Any]]:
    groups = load(alert_rules.RENDERED)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_committed_rules_are_rendered_from_the_thresholds() -> None:
    assert alert_rules.RENDERED.read_text() == alert_rules.render(), (
        "infrastructure/prometheus/rules/alerts.yml is out of date: run `make alert-rules`"
    )


def test_every_threshold_is_used_and_every_name_is_set() -> None:
    used = alert_rules.placeholders(alert_rules.TEMPLATE.read_text())
    assert used == set(alert_rules.thresholds())


def seconds(duration: str) -> int:
    """A Prometheus duration of one unit (``90s``, ``2m``, ``6h``) in seconds."""
    number, unit = re.fullmatch(r"(\d+)([smhd])", duration).groups()  # type: ignore[union-attr]
    return int(number) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def test_a_dead_instance_is_down_before_it_is_not_passing() -> None:
    """Both fire for a crashed instance; the first to notify must be the one that inhibits."""
    values = alert_rules.thresholds()
    assert seconds(str(values["not_passing_for"])) > seconds(str(values["instance_down_for"]))


def test_overrides_change_only_what_they_name() -> None:
    rendered = alert_rules.render({"instance_down_for": "7s", "consumer_lag_messages": 42})
    assert "for: 7s" in rendered
    assert "kafka_consumergroup_lag:sum > 42" in rendered
    default = alert_rules.render().splitlines()
    changed = [new for old, new in zip(default, rendered.splitlines(), strict=True) if old != new]
    assert changed and all("7s" in line or "42" in line for line in changed)
    with pytest.raises(ValueError, match="no such thresholds"):
        alert_rules.render({"instance_down_four": "1m"})


def test_a_name_without_a_value_fails_the_rendering(tmp_path: Path) -> None:
    template = tmp_path / "t.yml"
    template.write_text("expr: up > ${nowhere}\n")
    with pytest.raises(ValueError, match="nowhere"):
        alert_rules.render(template=template)


def test_every_alert_has_a_severity_a_summary_a_description_and_its_runbook_section() -> None:
    headings = set(re.findall(r"^## (\w+)$", RUNBOOK.read_text(), re.MULTILINE))
    thresholds = alert_rules.thresholds()
    for rule in alerting_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        assert annotations["runbook_url"] == f"{thresholds['runbook_url']}#{name.lower()}"
        assert name in headings, f"docs/runbook.md has no section '## {name}'"


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load(UNIT_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerting_rules()}
    assert names - firing == set(), "alerts never expected to fire"
    assert names - quiet == set(), "alerts never expected to stay quiet"


def test_the_unit_tests_load_the_shipped_rules() -> None:
    tests = load(UNIT_TESTS)
    assert [(UNIT_TESTS.parent / f).resolve() for f in tests["rule_files"]] == [
        alert_rules.RENDERED.resolve()
    ]


def test_alertmanager_inhibits_only_alerts_that_exist() -> None:
    names = {rule["alert"] for rule in alerting_rules()}
    config = load(ALERTMANAGER)
    for inhibit in config["inhibit_rules"]:
        for matcher in inhibit["source_matchers"] + inhibit["target_matchers"]:
            match = re.fullmatch(r'alertname=~?"([^"]+)"', matcher)
            assert match, matcher
            assert set(match.group(1).split("|")) <= names, matcher
    # A service that is down does not also page for its lag.
    assert any(
        "ServiceDown" in " ".join(rule["source_matchers"])
        and "ConsumerLagHigh" in " ".join(rule["target_matchers"])
        and rule["equal"] == ["service"]
        for rule in config["inhibit_rules"]
    )


def test_every_receiver_works_out_of_the_box() -> None:
    """Each posts to the platform's alert log, resolved alerts too; nothing else is live."""
    for receiver in load(ALERTMANAGER)["receivers"]:
        assert set(receiver) == {"name", "webhook_configs"}, receiver["name"]
        [webhook] = receiver["webhook_configs"]
        assert webhook == {"url": "http://alert-log:9099/alerts", "send_resolved": True}
    text = ALERTMANAGER.read_text()
    for example in ("slack_configs", "email_configs", "pagerduty_configs"):
        assert f"# {example}:" in text, f"no commented {example} example"
