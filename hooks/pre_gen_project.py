"""Reject bad cookiecutter answers before any file of the service is written.

Each problem is reported on one line and the hook exits with 1, which makes
cookiecutter remove the half-made directory.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
import tempfile
from pathlib import Path

ANSWERS: dict[str, object] = json.loads({{ cookiecutter | jsonify | tojson }})

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
PACKAGE = re.compile(r"^[a-z_][a-z0-9_]*$")
KAFKA_TOPIC = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
# A requirement for the chassis: a version range on an index, or a direct reference (a
# URL). A pattern, not `packaging`: neither cookiecutter nor cruft brings packaging into
# the Python that runs this hook. post_gen_project.py adds the `[testing]` extra itself.
_VERSION = r"(~=|===|==|!=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+"
_RANGE = rf"{_VERSION}(\s*,\s*{_VERSION})*"
_URL = r"@\s*[A-Za-z][A-Za-z0-9+.-]*://\S+"
CHASSIS_REQUIREMENT = re.compile(rf"^event[-_.]chassis\s*({_RANGE}|{_URL})?$", re.IGNORECASE)

# Top-level modules a generated service imports; a package named like one of
# them would shadow it.
IMPORTED_MODULES = {
    "aiohttp", "aiokafka", "anyio", "consul", "event_chassis", "fastapi", "faststream",
    "httpx", "opentelemetry", "prometheus_client", "pydantic", "pydantic_settings",
    "pytest", "starlette", "structlog", "uvicorn", "tests", "src",
}


def check_service_name(name: str) -> str | None:
    if not DNS_LABEL.match(name):
        return (
            f"service_name {name!r} is not a DNS label: use lowercase letters, "
            "digits and hyphens, start and end with a letter or digit, at most 63"
        )
    return None


def check_package_name(package: str) -> str | None:
    if not PACKAGE.match(package) or keyword.iskeyword(package):
        return f"package_name {package!r} is not a valid Python package name"
    if package in IMPORTED_MODULES or package in sys.stdlib_module_names:
        return f"package_name {package!r} would clash with the Python module {package!r}"
    return None


def check_port(port: str) -> str | None:
    if not port.isdigit() or not 1024 <= int(port) <= 65535:
        return f"http_port {port!r} must be a number from 1024 to 65535"
    return None


def check_topic(field: str, topic: str) -> str | None:
    if topic in {".", ".."} or not KAFKA_TOPIC.match(topic):
        return (
            f"{field} {topic!r} is not a legal Kafka topic name: use letters, "
            "digits, '.', '_' and '-', at most 249, and not '.' or '..'"
        )
    return None


def check_event_name(field: str, topic: str, event: str) -> str | None:
    if not event.isidentifier():
        return f"{field} {topic!r} must start with a letter to name an event class"
    return None


def check_partitions(partitions: str) -> str | None:
    if not partitions.isdigit() or not 1 <= int(partitions) <= 1000:
        return f"topic_partitions {partitions!r} must be a number from 1 to 1000"
    return None


def check_api_resource(resource: str) -> str | None:
    if not DNS_LABEL.match(resource):
        return f"api_resource {resource!r} must be lowercase letters, digits and hyphens"
    return None


def check_chassis_requirement(requirement: str) -> str | None:
    if requirement and not CHASSIS_REQUIREMENT.match(requirement):
        return (
            f"chassis_requirement {requirement!r} is not a requirement for event-chassis: "
            "use a version range (event-chassis~=1.1), a direct reference "
            "(event-chassis @ https://...), or leave it empty"
        )
    return None


def problems(answers: dict[str, object]) -> list[str]:
    get = lambda key: str(answers[key])  # noqa: E731
    found = [
        check_service_name(get("service_name")),
        check_package_name(get("package_name")),
        check_port(get("http_port")),
        check_api_resource(get("api_resource")),
        check_partitions(get("topic_partitions")),
        check_chassis_requirement(get("chassis_requirement").strip()),
    ]
    topics = ("consumes_topic", "produces_topic", "dead_letter_topic")
    found += [check_topic(field, get(field)) for field in topics]
    found += [
        check_event_name("consumes_topic", get("consumes_topic"), get("__consumed_event")),
        check_event_name("produces_topic", get("produces_topic"), get("__produced_event")),
    ]
    if get("__consumed_event") == get("__produced_event"):
        found.append("consumes_topic and produces_topic must name two different events")
    if len({get(field) for field in topics}) < len(topics):
        found.append(
            "consumes_topic, produces_topic and dead_letter_topic must be three different topics"
        )
    return [problem for problem in found if problem]


def main() -> int:
    found = problems(ANSWERS)
    for problem in found:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if found else 0


def remove_this_copy() -> None:
    """cookiecutter runs a rendered copy of this hook from the temporary folder and leaves
    it there (cookiecutter 2.7's hooks.run_script_with_context): remove that copy."""
    here = Path(__file__).resolve()
    if here.parent == Path(tempfile.gettempdir()).resolve() and here.name.startswith("tmp"):
        here.unlink(missing_ok=True)


if __name__ == "__main__":
    remove_this_copy()
    sys.exit(main())
