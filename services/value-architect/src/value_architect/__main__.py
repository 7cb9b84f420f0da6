"""Run the service: `python -m value_architect` or `value-architect`.

Uvicorn turns SIGTERM into a graceful stop: it stops accepting connections,
finishes requests in flight, then runs the app's lifespan shut-down. Kafka
stops fetching the moment the signal arrives, not only once uvicorn gets to
the lifespan, so only the messages already in flight are still handled.
"""

import logging
import sys
from types import FrameType

import uvicorn
from fastapi import FastAPI
from opentelemetry import trace

from . import handlers
from .app import create_app
from .config import Settings


class Server(uvicorn.Server):
    """Uvicorn's server, which also stops the Kafka consumers fetching on SIGTERM/SIGINT."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        handlers.stop_fetching(self.app.state.broker)
        super().handle_exit(sig, frame)


def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = create_app(settings)
    # Make the app's provider the global one, for spans created by your own code.
    trace.set_tracer_provider(app.state.tracer_provider)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )
    server = Server(config, app)
    server.run()
    if not server.started:
        sys.exit(3)  # what `uvicorn.run` does when start-up failed


if __name__ == "__main__":
    main()
