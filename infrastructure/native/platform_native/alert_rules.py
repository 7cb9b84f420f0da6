"""The alert rules, rendered from their template and the thresholds: one place for values.

infrastructure/prometheus/alerting/thresholds.toml holds every threshold and
duration; alerts.template.yml names them as ``${name}``. Prometheus has no
variables, so the rendered infrastructure/prometheus/rules/alerts.yml is
committed and loaded as it is in both modes. After editing a value::

    make alert-rules        # python -m platform_native alert-rules

A test fails while the committed file differs from a fresh rendering. Tests
render with other values (short ``for:`` durations) through ``overrides``.
Only ``${name}`` is replaced: PromQL's ``$1`` and Go templates' ``$labels``
pass through.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

from platform_native.configs import INFRASTRUCTURE, PROMETHEUS_RULES

ALERTING = INFRASTRUCTURE / "prometheus" / "alerting"
THRESHOLDS = ALERTING / "thresholds.toml"
TEMPLATE = ALERTING / "alerts.template.yml"
RENDERED = PROMETHEUS_RULES / "alerts.yml"

HEADER = (
    "# Rendered by `make alert-rules` from ../alerting/alerts.template.yml and\n"
    "# ../alerting/thresholds.toml: edit those, not this file.\n"
)
_PLACEHOLDER = re.compile(r"\$\{([a-z_][a-z0-9_]*)\}")

Value = str | int | float


def thresholds(path: Path = THRESHOLDS) -> dict[str, Value]:
    """Every value of thresholds.toml by name (its tables only group them)."""
    values: dict[str, Value] = {}
    for table, settings in tomllib.loads(path.read_text()).items():
        for name, value in settings.items():
            if name in values:
                raise ValueError(f"{path}: {name} is set twice (again in [{table}])")
            values[name] = value
    return values


def placeholders(template: str) -> set[str]:
    """The names a template uses."""
    return set(_PLACEHOLDER.findall(template))


def render(
    overrides: Mapping[str, Value] | None = None,
    *,
    template: Path = TEMPLATE,
    values: Path = THRESHOLDS,
) -> str:
    """The rules file: the template with every ``${name}`` replaced by its value.

    An override must name an existing threshold, and every name the template
    uses must have a value, so a typo fails here rather than in Prometheus.
    """
    known = thresholds(values)
    unknown = set(overrides or {}) - set(known)
    if unknown:
        raise ValueError(f"no such thresholds: {sorted(unknown)}")
    merged = {**known, **(overrides or {})}
    text = template.read_text()
    missing = placeholders(text) - set(merged)
    if missing:
        raise ValueError(f"{template} uses names {values} does not set: {sorted(missing)}")
    return HEADER + _PLACEHOLDER.sub(lambda match: str(merged[match.group(1)]), text)


def write(path: Path = RENDERED) -> Path:
    """Render with the shipped thresholds into ``path``."""
    path.write_text(render())
    return path
