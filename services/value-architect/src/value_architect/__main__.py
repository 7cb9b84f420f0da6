"""Run the service: `python -m value_architect` or `value-architect`.

Uvicorn turns SIGTERM into a graceful stop: it stops accepting connections,
finishes requests in flight, then runs the app's lifespan shut-down.
"""

import logging

import uvicorn
from opentelemetry import trace

from .app import create_app
from .config import Settings


def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = create_app(settings)
    # Make the app's provider the global one, for spans created by your own code.
    trace.set_tracer_provider(app.state.tracer_provider)
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )


if __name__ == "__main__":
    main()
