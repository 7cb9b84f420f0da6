"""`./deploy-all.sh contracts --graph`: who talks to whom, drawn from the contracts.

Services, topics (with their partitions), consumer groups and dead-letter topics, with
an arrow for each produce and consume: `topology.svg` by Graphviz's `dot` (Debian's
graphviz package, installed with apt-get when missing and running as root) and the same
map as a Mermaid block in `topology.md`, which GitHub draws.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from platform_deploy.contracts import Contract
from platform_native import apt

HEADER = (
    "<!-- Made by ./deploy-all.sh contracts --graph from services/*/contracts; do not edit. -->"
)


def _id(kind: str, name: str) -> str:
    return f"{kind}_{re.sub(r'[^A-Za-z0-9]', '_', name)}"


def edges(contracts: list[Contract]) -> list[tuple[str, str, str]]:
    """(service, topic, label) per produce (`produces`) and consume (`group <g>`)."""
    found = []
    for contract in contracts:
        for topic in sorted(contract.produces):
            found.append((contract.service, topic, "produces"))
        for topic in sorted(contract.consumes):
            found.append((contract.service, topic, f"group {contract.groups.get(topic, '?')}"))
    return found


def _topics(contracts: list[Contract]) -> list[str]:
    return sorted({topic for c in contracts for topic in (*c.produces, *c.consumes)})


def dot(contracts: list[Contract], partitions: dict[str, int]) -> str:
    """The map in Graphviz's language."""
    dead = {c.dead_letter for c in contracts}
    lines = [
        "digraph topology {",
        '  rankdir=LR; node [fontname="Helvetica"]; edge [fontname="Helvetica", fontsize=10];',
    ]
    for contract in contracts:
        lines.append(
            f'  {_id("s", contract.service)} [label="{contract.service}", shape=box, '
            'style="rounded,filled", fillcolor="#dbeafe"];'
        )
    for topic in _topics(contracts):
        count = partitions.get(topic)
        label = f"{topic}\\n{count} partitions" if count else topic
        style = (
            'style="dashed,filled", fillcolor="#fee2e2"'
            if topic in dead
            else ('style=filled, fillcolor="#fef9c3"')
        )
        lines.append(f'  {_id("t", topic)} [label="{label}", shape=cds, {style}];')
    for service, topic, label in edges(contracts):
        if label == "produces":
            extra = ", style=dashed" if topic in dead else ""
            lines.append(f'  {_id("s", service)} -> {_id("t", topic)} [label="{label}"{extra}];')
        else:
            lines.append(f'  {_id("t", topic)} -> {_id("s", service)} [label="{label}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def mermaid(contracts: list[Contract], partitions: dict[str, int]) -> str:
    """The same map as a Mermaid flowchart."""
    dead = {c.dead_letter for c in contracts}
    lines = ["flowchart LR"]
    for contract in contracts:
        lines.append(f'  {_id("s", contract.service)}["{contract.service}"]')
    for topic in _topics(contracts):
        count = partitions.get(topic)
        label = f"{topic}<br/>{count} partitions" if count else topic
        lines.append(f'  {_id("t", topic)}[/"{label}"/]')
    for service, topic, label in edges(contracts):
        if label == "produces":
            arrow = "-.->" if topic in dead else "-->"
            lines.append(f"  {_id('s', service)} {arrow}|{label}| {_id('t', topic)}")
        else:
            lines.append(f"  {_id('t', topic)} -->|{label}| {_id('s', service)}")
    for topic in sorted(t for t in dead if t):
        lines.append(f"  style {_id('t', topic)} stroke-dasharray: 5 5")
    return "\n".join(lines) + "\n"


def dot_command() -> str:
    """Graphviz's `dot`: found, or installed from Debian (as root); else a clear error."""
    found = shutil.which("dot")
    if found is None:
        try:
            apt.install(["graphviz"])
        except apt.AptError as error:
            message = f"Graphviz's dot is needed: apt-get install graphviz ({error})"
            raise RuntimeError(message) from error
        found = shutil.which("dot")
    if found is None:
        raise RuntimeError("Graphviz's dot is needed: apt-get install graphviz")
    return found


def write(contracts: list[Contract], partitions: dict[str, int], out_dir: Path) -> list[Path]:
    """Write `topology.svg` and `topology.md` into `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    source = dot(contracts, partitions)
    svg = subprocess.run(
        [dot_command(), "-Tsvg"], input=source, capture_output=True, text=True, check=True
    ).stdout
    svg_path, md_path = out_dir / "topology.svg", out_dir / "topology.md"
    svg_path.write_text(svg)
    md_path.write_text(
        f"{HEADER}\n# Who talks to whom\n\n"
        "Services (boxes) and the topics they produce and consume, with each consumer's\n"
        "group; dead-letter topics dashed. `./deploy-all.sh contracts --graph` makes this\n"
        "page and [topology.svg](topology.svg) from each service's `contracts/asyncapi.yaml`.\n\n"
        "![Who talks to whom](topology.svg)\n\n"
        f"```mermaid\n{mermaid(contracts, partitions)}```\n"
    )
    return [svg_path, md_path]
