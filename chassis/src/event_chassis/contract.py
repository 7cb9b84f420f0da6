"""A service's event contract: its AsyncAPI 3 document, committed, served and checked.

The document is FastStream's, with three changes so that it says what travels on each
topic and nothing about where the service runs:

- no `servers` (they come from the environment, and the contract must not);
- a consumed topic's payload is one event, not FastStream's batch (an array of them):
  every Kafka record carries one;
- each receive operation names its consumer group (Kafka binding `groupId`), and
  `x-dead-letter-topic` says where the service sends what it cannot process.

The platform's `./deploy-all.sh contracts` reads every service's committed
`contracts/asyncapi.yaml` and refuses a producer whose events a consumer cannot read.

    python -m event_chassis.contract write   # (re)write contracts/asyncapi.yaml
    python -m event_chassis.contract check   # exit 1 when the committed one is stale

Both run in the service's folder; `--factory package.module:function` names the
function that builds the `Service` (by default `<package>.service:create_service`, the
package named by the service's console script in pyproject.toml).
"""

import argparse
import difflib
import importlib
import os
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .service import Service

PATH = Path("contracts") / "asyncapi.yaml"
HEADER = (
    "# Team-owned: generated from the service's events (python -m event_chassis.contract write)\n"
    "# and committed; tests fail when stale; ./deploy-all.sh contracts checks it across services.\n"
)
KAFKA_BINDING = "0.4.0"  # as FastStream's channel bindings


def document(service: Service) -> dict[str, Any]:
    """The service's contract: its AsyncAPI 3 document as plain JSON data."""
    spec: dict[str, Any] = service.asyncapi().to_specification().to_jsonable()
    spec.pop("servers", None)
    for channel in spec.get("channels", {}).values():
        channel.pop("servers", None)
    schemas = spec.get("components", {}).get("schemas", {})
    messages = spec.get("components", {}).get("messages", {})
    group = {"type": "string", "enum": [service.settings.consumer_group]}
    for operation in spec.get("operations", {}).values():
        if operation.get("action") != "receive":
            continue
        operation["bindings"] = {"kafka": {"groupId": group, "bindingVersion": KAFKA_BINDING}}
        for reference in operation.get("messages", []):
            _one_event_per_record(_resolve(spec, reference["$ref"]), messages, schemas)
    spec["x-dead-letter-topic"] = service.settings.dead_letter_topic
    return spec


def _resolve(spec: dict[str, Any], reference: str) -> dict[str, Any]:
    found: Any = spec
    for part in reference.removeprefix("#/").split("/"):
        found = found[part]
    result: dict[str, Any] = found
    return result


def _one_event_per_record(
    message: dict[str, Any], messages: dict[str, Any], schemas: dict[str, Any]
) -> None:
    """Replace a batch subscriber's payload (an array of events) by the event itself."""
    target = message
    if "$ref" in message:  # the channel's message points at components/messages
        target = messages[message["$ref"].rsplit("/", 1)[1]]
    payload = target.get("payload", {})
    name = payload.get("$ref", "").rsplit("/", 1)[-1]
    batch = schemas.get(name, payload)
    if batch.get("type") == "array" and "items" in batch:
        target["payload"] = batch["items"]
        schemas.pop(name, None)


def to_yaml(spec: dict[str, Any]) -> str:
    """The committed form: a header that says where it comes from, then the document.

    Keys are sorted: FastStream lists publishers in no fixed order from one run to the next.
    """
    return HEADER + yaml.safe_dump(spec, sort_keys=True, allow_unicode=True, width=100)


def default_factory(folder: Path) -> str:
    """`<package>.service:create_service`, the package from the console script."""
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    [entry] = project["scripts"].values()
    return f"{entry.split('.')[0]}.service:create_service"


def load_factory(reference: str, folder: Path) -> Callable[[], Service]:
    """Import `package.module:function`, with the service's `src` on the path."""
    sys.path[:0] = [str(folder / "src"), str(folder)]
    module, _, function = reference.partition(":")
    factory: Callable[[], Service] = getattr(importlib.import_module(module), function)
    return factory


def main(argv: list[str] | None = None) -> int:
    """`write` the contract, or `check` that the committed one is current."""
    parser = argparse.ArgumentParser(prog="python -m event_chassis.contract")
    parser.add_argument("action", choices=["write", "check", "print"])
    parser.add_argument("--factory", help="package.module:function that builds the Service")
    parser.add_argument("--path", type=Path, default=PATH, help=f"default: {PATH}")
    args = parser.parse_args(argv)
    folder = Path.cwd()
    # A stateful service's Database wants a URL; nothing connects to it here.
    os.environ.setdefault("DATABASE_URL", "postgresql://localhost/contract-generation")
    factory = load_factory(args.factory or default_factory(folder), folder)
    text = to_yaml(document(factory()))
    path: Path = args.path
    if args.action == "print":
        sys.stdout.write(text)
    elif args.action == "write":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    else:
        committed = path.read_text() if path.exists() else ""
        if committed != text:
            diff = difflib.unified_diff(
                committed.splitlines(), text.splitlines(), str(path), "generated", lineterm=""
            )
            print("\n".join(list(diff)[:40]))
            print(f"{path} is stale: run `python -m event_chassis.contract write` and commit it")
            return 1
        print(f"{path} is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
