"""Command line of the deploy steps (see the package docstring)::

python -m platform_deploy topics    --bootstrap 127.0.0.1:9094
python -m platform_deploy databases --state-dir .platform [--compose "docker compose ..."]
python -m platform_deploy databases --state-dir .platform --report  # status
python -m platform_deploy kong      --out infrastructure/kong/kong.generated.yml
python -m platform_deploy kong-load --admin http://127.0.0.1:8001      # Docker
python -m platform_deploy compose   --out .platform/docker-compose.services.yml
python -m platform_deploy with-wheels -- docker compose ... build   # Docker
python -m platform_deploy start     --state-dir .platform              # native
python -m platform_deploy stop      --state-dir .platform
python -m platform_deploy wait      --consul 127.0.0.1:8500
python -m platform_deploy status    --consul 127.0.0.1:8500
python -m platform_deploy alerts    --alertmanager http://127.0.0.1:9093
python -m platform_deploy addresses --state-dir .platform [--docker]
python -m platform_deploy new       billing-api http_port=8021
python -m platform_deploy contracts [--graph [--out-dir docs]]
python -m platform_deploy openbao    --state-dir .platform --url http://127.0.0.1:8200  # Docker
python -m platform_deploy openbao-audit --file .platform/infra/openbao/audit.log  # or - (stdin)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from platform_deploy import (
    addresses,
    alerts,
    compose,
    contracts,
    databases,
    health,
    kong,
    native_services,
    new,
    openbao,
    topics,
    topology,
    wheelhouse,
)
from platform_deploy.discovery import REPO, discover
from platform_native import progress
from platform_native.tools import ToolError

KONG_BASE = REPO / "infrastructure" / "kong" / "kong.yml"
KONG_GENERATED = REPO / "infrastructure" / "kong" / "kong.generated.yml"


def cmd_topics(args: argparse.Namespace) -> int:
    """Create the topics every service declares; existing ones are left alone."""
    progress.say(f"    {topics.create_declared_topics(args.services_dir, args.bootstrap)}")
    return 0


def cmd_databases(args: argparse.Namespace) -> int:
    """Create each declared service's database and role; --report: list them (status)."""
    try:
        if args.compose:
            found = databases.compose(args.compose, args.state_dir)
            address = f"127.0.0.1:{os.environ.get('POSTGRES_PORT', '5432')}"
        else:
            found = databases.native(args.state_dir)
            address = found.address
        if args.report:
            lines = databases.report(found, args.services_dir, address)
        else:
            lines = [f"    {line}" for line in databases.ensure(found, args.services_dir)]
    except (databases.NoDatabaseServer, ToolError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for line in lines:
        progress.say(line)
    return 0


def cmd_kong(args: argparse.Namespace) -> int:
    """Merge the base config with every service's snippet and validate the result."""
    deck = args.deck.split() if args.deck else None
    for line in kong.merge_and_validate(args.services_dir, args.base, args.out, deck):
        progress.say(f"    {line}")
    return 0


def cmd_kong_load(args: argparse.Namespace) -> int:
    """Load the merged config into a running DB-less Kong (Docker mode)."""
    ok, message = kong.load(args.admin, args.config)
    print(f"    {message}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def cmd_compose(args: argparse.Namespace) -> int:
    """Write a Compose file for the services, joined to the infrastructure's network."""
    count = compose.write(args.services_dir, args.out)
    progress.say(f"    compose: {count} services in {args.out}")
    return 0


def cmd_with_wheels(args: argparse.Namespace) -> int:
    """Run a command (an image build) with the chassis wheels served as PIP_FIND_LINKS."""
    command = args.command_line[1:] if args.command_line[:1] == ["--"] else args.command_line
    return wheelhouse.run_with_wheels(args.wheels, command)


def cmd_start(args: argparse.Namespace) -> int:
    """Install and start every service as a detached process, once (native mode)."""
    return native_services.start(args.services_dir, args.state_dir)


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop the services `start` recorded."""
    return native_services.stop(args.state_dir)


def cmd_wait(args: argparse.Namespace) -> int:
    """Wait until every service has a passing instance in Consul."""
    return health.wait(args.services_dir, args.consul, args.timeout)


def cmd_status(args: argparse.Namespace) -> int:
    """Print each service's health in Consul; exit 1 when any is not passing."""
    return health.status(args.services_dir, args.consul)


def cmd_alerts(args: argparse.Namespace) -> int:
    """Print the alerts firing now (neither silenced nor inhibited)."""
    for text in alerts.report(args.alertmanager):
        print(text)
    return 0


def cmd_addresses(args: argparse.Namespace) -> int:
    """Print every address of the running platform and of each service."""
    if args.docker:
        rows = addresses.docker_rows()
    else:
        rows = addresses.native_rows(args.state_dir / "infra" / "state.json", args.kong_config)
    for line in addresses.lines(rows + addresses.service_rows(args.services_dir)):
        progress.say(line)
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    """Create a service from the template with cruft (its commit recorded for updates)."""
    from cookiecutter.exceptions import CookiecutterException

    answers = dict(answer.split("=", 1) for answer in args.answers)
    try:
        project = new.create(args.services_dir, args.name, answers, ask=sys.stdin.isatty())
    except CookiecutterException as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    progress.say(f"    {project}: created from the template")
    return 0


def cmd_contracts(args: argparse.Namespace) -> int:
    """Check the services' event contracts against each other and their history."""
    report, found = contracts.check(args.services_dir)
    for line in report.warnings:
        print(f"warning: {line}")
    for line in report.failures:
        print(f"FAIL {line}", file=sys.stderr)
    if args.graph:
        partitions = {t: i.partitions for i in discover(args.services_dir) for t in i.topics}
        try:
            paths = topology.write(found, partitions, args.out_dir)
        except RuntimeError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"contracts: wrote {' and '.join(str(path) for path in paths)}")
    count = len(report.failures)
    verdict = f"{count} problem{'s' * (count != 1)}" if count else "every reader can read"
    print(f"contracts: {len(found)} services, {report.pairs} producer-consumer pairs: {verdict}")
    return 1 if report.failures else 0


def cmd_openbao(args: argparse.Namespace) -> int:
    """Compose's OpenBao: initialise and unseal it, then the bootstrap (POSTGRES_PASSWORD:
    the superuser's, for the database engine)."""
    found = discover(args.services_dir)
    stateful = [info.name for info in found if info.database]
    try:
        credentials = openbao.compose(
            args.state_dir,
            [info.name for info in found],
            stateful,
            os.environ.get("POSTGRES_PASSWORD", ""),
            args.url,
            args.postgres_address,
        )
    except (openbao.BootstrapError, ToolError, OSError) as error:
        print(f"OpenBao: {error}", file=sys.stderr)
        return 1
    for name, files in credentials.items():
        progress.say(f"    {name}: policy, AppRole (files in {files.role_id_file.parent})")
    return 0


def cmd_openbao_audit(args: argparse.Namespace) -> int:
    """OpenBao's audit log as one line per answer: which service read which path."""
    try:
        text = sys.stdin.read() if str(args.file) == "-" else args.file.read_text()
    except OSError as error:
        print(f"no OpenBao audit log: {error}", file=sys.stderr)
        return 1
    for line in openbao.audit_lines(text.splitlines()):
        print(line)
    return 0


def parser() -> argparse.ArgumentParser:
    """The subcommands and their options."""
    root = argparse.ArgumentParser(prog="python -m platform_deploy")
    root.add_argument("--services-dir", type=Path, default=REPO / "services")
    commands = root.add_subparsers(dest="command", required=True)

    sub = commands.add_parser("topics", help=cmd_topics.__doc__)
    sub.add_argument("--bootstrap", required=True)
    sub.set_defaults(func=cmd_topics)

    sub = commands.add_parser("databases", help=cmd_databases.__doc__)
    sub.add_argument("--state-dir", type=Path, required=True)
    sub.add_argument("--compose", help="the `docker compose ...` command (Docker mode)")
    sub.add_argument("--report", action="store_true", help="list them, with the outbox backlog")
    sub.set_defaults(func=cmd_databases)

    sub = commands.add_parser("kong", help=cmd_kong.__doc__)
    sub.add_argument("--base", type=Path, default=KONG_BASE)
    sub.add_argument("--out", type=Path, default=KONG_GENERATED)
    sub.add_argument("--deck", help="decK command to use instead of the cached binary")
    sub.set_defaults(func=cmd_kong)

    sub = commands.add_parser("kong-load", help=cmd_kong_load.__doc__)
    sub.add_argument("--admin", default="http://127.0.0.1:8001")
    sub.add_argument("--config", type=Path, default=KONG_GENERATED)
    sub.set_defaults(func=cmd_kong_load)

    sub = commands.add_parser("compose", help=cmd_compose.__doc__)
    sub.add_argument("--out", type=Path, required=True)
    sub.set_defaults(func=cmd_compose)

    sub = commands.add_parser("with-wheels", help=cmd_with_wheels.__doc__)
    sub.add_argument("--wheels", type=Path, default=REPO / ".wheels")
    sub.add_argument("command_line", nargs=argparse.REMAINDER, help="-- command ...")
    sub.set_defaults(func=cmd_with_wheels)

    for name, func in (("start", cmd_start), ("stop", cmd_stop)):
        sub = commands.add_parser(name, help=func.__doc__)
        sub.add_argument("--state-dir", type=Path, required=True)
        sub.set_defaults(func=func)

    for name, func in (("wait", cmd_wait), ("status", cmd_status)):
        sub = commands.add_parser(name, help=func.__doc__)
        sub.add_argument("--consul", required=True, help="Consul HTTP host:port")
        sub.add_argument("--timeout", type=float, default=120.0)
        sub.set_defaults(func=func)

    sub = commands.add_parser("alerts", help=cmd_alerts.__doc__)
    sub.add_argument("--alertmanager", required=True, help="Alertmanager's base URL")
    sub.set_defaults(func=cmd_alerts)

    sub = commands.add_parser("new", help=cmd_new.__doc__)
    sub.add_argument("name")
    sub.add_argument("answers", nargs="*", help="key=value answers to the template")
    sub.set_defaults(func=cmd_new)

    sub = commands.add_parser("contracts", help=cmd_contracts.__doc__)
    sub.add_argument("--graph", action="store_true", help="also draw topology.svg and .md")
    sub.add_argument("--out-dir", type=Path, default=REPO / "docs")
    sub.set_defaults(func=cmd_contracts)

    sub = commands.add_parser("openbao", help=cmd_openbao.__doc__)
    sub.add_argument("--state-dir", type=Path, required=True)
    sub.add_argument("--url", required=True, help="OpenBao's published address")
    sub.add_argument("--postgres-address", default="postgres:5432", help="as OpenBao sees it")
    sub.set_defaults(func=cmd_openbao)

    sub = commands.add_parser("openbao-audit", help=cmd_openbao_audit.__doc__)
    sub.add_argument("--file", type=Path, required=True, help="the audit log, or - for stdin")
    sub.set_defaults(func=cmd_openbao_audit)

    sub = commands.add_parser("addresses", help=cmd_addresses.__doc__)
    sub.add_argument("--state-dir", type=Path, required=True)
    sub.add_argument("--docker", action="store_true", help="the Docker mode's addresses")
    sub.add_argument("--kong-config", type=Path, default=KONG_GENERATED)
    sub.set_defaults(func=cmd_addresses)
    return root


def main(argv: list[str] | None = None) -> int:
    """Run one step."""
    args = parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
