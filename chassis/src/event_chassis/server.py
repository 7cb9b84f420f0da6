"""The entry point of every service: `python -m <package>`.

`run(create_service)` configures logging, then serves the app with uvicorn;
`python -m <package> asyncapi` prints the service's AsyncAPI document instead.
Uvicorn turns SIGTERM into a graceful stop: it stops accepting connections,
finishes the requests in flight, then runs the app's shut-down. The consumers
stop fetching the moment the signal arrives, not only once uvicorn gets to the
shut-down, so only the batches already in flight are still handled.
"""

import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from contextlib import suppress
from types import FrameType

import uvicorn
from opentelemetry import trace

from . import logs, secrets
from .service import Service


class Server(uvicorn.Server):
    """Uvicorn's server, which also starts the consumers' drain on SIGTERM/SIGINT."""

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        with suppress(RuntimeError):  # no event loop yet: nothing to drain
            asyncio.get_running_loop().call_soon(self.service.begin_drain)
        super().handle_exit(sig, frame)


def run(create_service: Callable[[], Service], argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        service = create_service()
    except secrets.SecretsError as error:  # one line, e.g. OpenBao unreachable or sealed
        sys.exit(f"cannot start: {error}")
    if arguments[:1] == ["asyncapi"]:
        print(service.asyncapi().to_specification().to_json())
        return
    settings = service.settings
    provider = logs.configure(settings)
    for warning in secrets.environment_warnings(settings.secret_sources):
        logging.getLogger("event_chassis.secrets").warning("%s", warning)
    # The service's provider is the global one, for spans created by the team's code.
    trace.set_tracer_provider(service.tracer_provider)
    config = uvicorn.Config(
        service.app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # records go through the chassis' handlers (see logs)
        log_level=settings.log_level.lower(),
        access_log=False,
        use_colors=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )
    server = Server(config, service)
    try:
        server.run()
    finally:
        logs.shutdown(provider)
    if service.fatal:
        sys.exit(f"{settings.otel_service_name} stopped: {service.fatal}")
    if not server.started:
        sys.exit(3)  # what `uvicorn.run` does when start-up failed
