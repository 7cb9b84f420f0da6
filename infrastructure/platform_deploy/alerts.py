"""The alerts firing now, as Alertmanager lists them: the tail of `./deploy-all.sh status`."""

from __future__ import annotations

from typing import Any

import httpx


def firing(alertmanager: str) -> list[dict[str, Any]]:
    """Active alerts that are neither silenced nor inhibited (what notifies someone)."""
    response = httpx.get(
        f"{alertmanager}/api/v2/alerts",
        params={"active": "true", "silenced": "false", "inhibited": "false"},
        timeout=10,
    )
    response.raise_for_status()
    alerts: list[dict[str, Any]] = response.json()
    return sorted(alerts, key=lambda a: (a["labels"].get("severity") != "critical", a["startsAt"]))


def line(alert: dict[str, Any]) -> str:
    """``critical  ServiceDown  service=orders  since 2026-...: <summary>``."""
    labels = alert["labels"]
    where = "  ".join(
        f"{key}={labels[key]}"
        for key in ("service", "instance", "consumergroup", "reason")
        if key in labels
    )
    since = alert["startsAt"][:19].replace("T", " ")
    summary = alert.get("annotations", {}).get("summary", "")
    severity = labels.get("severity", "-")
    return f"{severity:<8}  {labels['alertname']}  {where}  since {since}: {summary}"


def report(alertmanager: str) -> list[str]:
    """Lines for the status report; never fails the status command."""
    try:
        alerts = firing(alertmanager)
    except httpx.HTTPError as error:
        return [f"alerts: unknown (Alertmanager at {alertmanager} unreachable: {error})"]
    if not alerts:
        return [f"alerts: none firing (Alertmanager: {alertmanager})"]
    header = f"alerts: {len(alerts)} firing (Alertmanager: {alertmanager})"
    return [header, *(f"  {line(alert)}" for alert in alerts)]
