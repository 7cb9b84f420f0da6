"""`./deploy-all.sh contracts`: the gate between the services' event contracts.

Each service commits its AsyncAPI document as `contracts/asyncapi.yaml` (the chassis
writes it: `python -m event_chassis.contract write`). From them all this builds the map
topic -> producers, consumers and fails (one line per problem) when:

- a producer of a topic may send an event a consumer of it rejects (compatibility.py);
- a service's events changed incompatibly with an earlier committed version of its
  contract (git history), under the topic's mode, `compatibility = {topic = mode}` in
  the service's `[tool.event-platform]`: `backward-transitive` (the default: every
  earlier version), `backward` (the last one) or `none`. What it sends must stay
  readable by the readers of every earlier version; what it reads must still accept
  what every earlier version accepted.

It warns for a topic consumed that no service produces, or produced that none consumes
(dead-letter topics are for people, not services).
"""

from __future__ import annotations

import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from platform_deploy.compatibility import Schema, as_sent, problems, self_contained

CONTRACT = Path("contracts") / "asyncapi.yaml"
MODES = ("backward-transitive", "backward", "none")


@dataclass
class Contract:
    """What one service produces and consumes, from its AsyncAPI document."""

    service: str
    produces: dict[str, Schema] = field(default_factory=dict)
    consumes: dict[str, Schema] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)  # topic -> consumer group
    dead_letter: str | None = None


@dataclass
class Report:
    """The gate's answer: failures (exit 1) and warnings, one line each."""

    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    pairs: int = 0


def parse(service: str, document: dict[str, Any]) -> Contract:
    """The topics and event schemas of an AsyncAPI 3 document (the chassis' form)."""
    contract = Contract(service, dead_letter=document.get("x-dead-letter-topic"))
    components = document.get("components", {})
    schemas = components.get("schemas", {})
    for operation in document.get("operations", {}).values():
        channel = _follow(document, operation["channel"])
        topic = channel["address"]
        payloads = [
            self_contained(_follow(document, _follow(document, ref)).get("payload", {}), schemas)
            for ref in operation.get("messages", [])
        ]
        schema = payloads[0] if len(payloads) == 1 else {"anyOf": payloads}
        if operation["action"] == "send":
            contract.produces[topic] = _either(contract.produces.get(topic), schema)
        else:
            contract.consumes[topic] = _either(contract.consumes.get(topic), schema)
            group = operation.get("bindings", {}).get("kafka", {}).get("groupId", {})
            contract.groups[topic] = (group.get("enum") or ["?"])[0]
    return contract


def _follow(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        found: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            found = found[part]
        node = found
    return node


def _either(known: Schema | None, schema: Schema) -> Schema:
    return schema if known is None or known == schema else {"anyOf": [known, schema]}


def service_name(directory: Path) -> str:
    name: str = tomllib.loads((directory / "pyproject.toml").read_text())["project"]["name"]
    return name


def modes(directory: Path) -> dict[str, str]:
    """The service's compatibility mode per topic (`[tool.event-platform] compatibility`)."""
    project = tomllib.loads((directory / "pyproject.toml").read_text())
    chosen: dict[str, str] = project["tool"]["event-platform"].get("compatibility", {})
    return chosen


def load(directory: Path, text: str | None = None) -> Contract:
    """A service's contract: its working copy, or `text` (an earlier version)."""
    text = (directory / CONTRACT).read_text() if text is None else text
    return parse(service_name(directory), yaml.safe_load(text))


def history(directory: Path) -> list[tuple[str, str]]:
    """(commit, text) of each committed version of the contract, newest first."""
    try:
        log = subprocess.run(
            ["git", "log", "--format=%h", "--", str(CONTRACT)],
            cwd=directory,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return []  # not in a git repository: no history to check against
    versions = []
    for commit in log:
        shown = subprocess.run(
            ["git", "show", f"{commit}:./{CONTRACT}"],
            cwd=directory,
            capture_output=True,
            text=True,
            check=False,
        )
        if shown.returncode == 0:
            versions.append((commit, shown.stdout))
    return versions


def check(services_dir: Path) -> tuple[Report, list[Contract]]:
    """Every service's contract against the others' and against its own history."""
    report = Report()
    contracts = []
    for pyproject in sorted(services_dir.glob("*/pyproject.toml")):
        directory = pyproject.parent
        if "event-platform" not in tomllib.loads(pyproject.read_text()).get("tool", {}):
            continue
        if not (directory / CONTRACT).is_file():
            report.failures.append(
                f"{directory.name}: no {CONTRACT}; in the service: "
                "python -m event_chassis.contract write, then commit it"
            )
            continue
        contract = load(directory)
        contracts.append(contract)
        _against_history(directory, contract, report)
    _across_services(contracts, report)
    return report, contracts


def _across_services(contracts: list[Contract], report: Report) -> None:
    producers = _by_topic(contracts, "produces")
    consumers = _by_topic(contracts, "consumes")
    dead_letters = {c.dead_letter for c in contracts if c.dead_letter}
    for topic in sorted(set(producers) | set(consumers)):
        for producer in producers.get(topic, []):
            for consumer in consumers.get(topic, []):
                report.pairs += 1
                writer, reader = as_sent(producer.produces[topic]), consumer.consumes[topic]
                for line in problems(writer, reader, producer.service, consumer.service):
                    report.failures.append(
                        f"{topic}: {consumer.service} cannot read {producer.service}'s "
                        f"events: {line}"
                    )
        names = ", ".join(c.service for c in consumers.get(topic, []))
        if topic not in producers:
            report.warnings.append(f"{topic}: consumed by {names}, produced by no service")
        elif topic not in consumers and topic not in dead_letters:
            producing = ", ".join(c.service for c in producers[topic])
            report.warnings.append(f"{topic}: produced by {producing}, consumed by no service")


def _by_topic(contracts: list[Contract], side: str) -> dict[str, list[Contract]]:
    found: dict[str, list[Contract]] = {}
    for contract in contracts:
        for topic in getattr(contract, side):
            found.setdefault(topic, []).append(contract)
    return found


def _against_history(directory: Path, contract: Contract, report: Report) -> None:
    chosen = modes(directory)
    for topic, mode in chosen.items():
        if mode not in MODES:
            report.failures.append(
                f"{topic}: {contract.service}'s compatibility {mode!r} is not one of {MODES}"
            )
    current = (directory / CONTRACT).read_text()
    earlier = [(commit, text) for commit, text in history(directory) if text != current]
    for index, (commit, text) in enumerate(earlier):
        old = load(directory, text)
        for topic, schema in contract.produces.items():
            mode = chosen.get(topic, MODES[0])
            if topic in old.produces and _applies(mode, index):
                writer, reader = as_sent(schema), old.produces[topic]
                _compare(report, topic, contract.service, commit, writer, reader, "sends")
        for topic, schema in contract.consumes.items():
            mode = chosen.get(topic, MODES[0])
            if topic in old.consumes and _applies(mode, index):
                writer, reader = old.consumes[topic], schema
                _compare(report, topic, contract.service, commit, writer, reader, "reads")


def _applies(mode: str, index: int) -> bool:
    return mode == MODES[0] or (mode == "backward" and index == 0)


def _compare(
    report: Report, topic: str, service: str, commit: str, writer: Schema, reader: Schema, verb: str
) -> None:
    if writer == reader:
        return
    now, then = f"{service} (now)", f"{service} (at {commit})"
    names = (now, then) if verb == "sends" else (then, now)
    for line in problems(writer, reader, *names):
        report.failures.append(
            f"{topic}: what {service} {verb} changed incompatibly since {commit}: {line}"
        )
