"""The entry point of every service: `python -m <package>`.

`run(create_service)` configures logging, then serves the app with uvicorn;
`python -m <package> asyncapi` prints the service's AsyncAPI document instead.
A new Kafka password in the password's file restarts the process in place (`restart`).
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
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from opentelemetry import trace

from . import logs, secrets
from .restart import KafkaPasswordWatch, start_again
from .service import Service
from .settings import ServiceSettings


class Server(uvicorn.Server):
    """Uvicorn's server, which also starts the consumers' drain on SIGTERM/SIGINT."""

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        with suppress(RuntimeError):  # no event loop yet: nothing to drain
            asyncio.get_running_loop().call_soon(self.service.begin_drain)
        super().handle_exit(sig, frame)


RETRY_SECONDS = 5.0  # how often a service waiting for its secrets tries again


def wait_for_secrets(
    create_service: Callable[[], Service], settings: ServiceSettings, reason: str
) -> Service | None:
    """Serve /health/live, and /health/ready as 503 with the reason, while the service's
    secrets cannot be read (OpenBao unreachable or sealed, a refused login, a missing
    path): try again every RETRY_SECONDS, reading the files anew; the service once they
    could be read, None if the process was told to stop meanwhile."""
    logger = logging.getLogger("event_chassis.secrets")
    logger.error("not ready: %s; trying again every %.0fs", reason, RETRY_SECONDS)
    said = [reason]
    app = FastAPI(openapi_url=None)

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/health/ready")
    async def ready() -> JSONResponse:
        answer = {"status": "not ready", "reason": f"secrets: {said[0]}"}
        return JSONResponse(answer, status_code=503)

    config = uvicorn.Config(
        app, host=settings.http_host, port=settings.http_port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    found: list[Service] = []

    async def retry() -> None:
        while not server.should_exit:
            await asyncio.sleep(RETRY_SECONDS)
            try:
                found.append(await asyncio.to_thread(create_service))
            except secrets.SecretsError as error:
                if str(error) != said[0]:
                    logger.error("not ready: %s", error)
                said[0] = str(error)
                continue
            logger.info("secrets read: starting")
            server.should_exit = True

    async def serve() -> None:
        task = asyncio.create_task(retry())
        try:
            await server.serve()
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    asyncio.run(serve())
    return found[0] if found else None


def run(create_service: Callable[[], Service], argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        service: Service | None = create_service()
        problem = None
    except secrets.SecretsError as error:  # one line, e.g. OpenBao unreachable or sealed
        if arguments[:1] == ["asyncapi"]:
            sys.exit(f"cannot start: {error}")
        service, problem = None, error
    if service is not None and arguments[:1] == ["asyncapi"]:
        print(service.asyncapi().to_specification().to_json())
        return
    if service is None:
        try:
            with secrets.without_vault():  # its settings, to serve health on its own port
                waiting = create_service().settings
        except secrets.SecretsError:  # a file, not the server: nothing to wait for
            sys.exit(f"cannot start: {problem}")
        provider = logs.configure(waiting)
        service = wait_for_secrets(create_service, waiting, str(problem))
        if service is None:  # stopped while waiting
            logs.shutdown(provider)
            sys.exit(f"cannot start: {problem}")
    else:
        provider = logs.configure(service.settings)
    settings = service.settings
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
    watch = KafkaPasswordWatch(server, service)
    watch.configure(config)
    try:
        server.run()
    finally:
        logs.shutdown(provider)
    if service.fatal:
        sys.exit(f"{settings.otel_service_name} stopped: {service.fatal}")
    if watch.restarting:
        start_again()
    if not server.started:
        sys.exit(3)  # what `uvicorn.run` does when start-up failed
