"""Against a real Consul agent (marker `consul`; the platform's `make test` runs these
with `CONSUL_HTTP_ADDR` pointing at the Consul it starts).

What the fake agent of test_discovery cannot show: how Consul itself treats a
check that is registered again.
"""

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from event_chassis.discovery import ConsulRegistration
from event_chassis.health import KAFKA, Readiness
from event_chassis.testing import test_settings

from .example import Settings

pytestmark = pytest.mark.consul


@pytest.fixture
def readiness() -> Readiness:
    return Readiness()


@pytest.fixture
async def ready_endpoint(readiness: Readiness) -> AsyncIterator[int]:
    """/health/ready as the service serves it: 200 once ready, 503 before."""

    async def ready(_: web.Request) -> web.Response:
        return web.Response(status=200 if readiness.ready else 503)

    app = web.Application()
    app.router.add_get("/health/ready", ready)
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port
    await runner.cleanup()


def statuses(consul: str, service: str) -> list[str]:
    """The status of each instance check of `service` (not the node's), as Consul says."""
    entries: list[dict[str, Any]] = httpx.get(f"{consul}/v1/health/service/{service}").json()
    checks = (check for entry in entries for check in entry["Checks"])
    return [check["Status"] for check in checks if check["CheckID"] != "serfHealth"]


async def test_a_ready_instance_passes_at_once_not_at_its_next_check(
    readiness: Readiness, ready_endpoint: int
) -> None:
    """With a 10-minute interval, only the registration can make the check pass this soon."""
    consul = os.environ["CONSUL_HTTP_ADDR"]
    name = f"chassis-{uuid.uuid4().hex[:8]}"
    settings = test_settings(
        Settings,
        otel_service_name=name,
        consul_enabled=True,
        consul_http_addr=consul,
        service_advertise_address="127.0.0.1",
        http_port=ready_endpoint,
        consul_check_interval="10m",
    )
    registration = ConsulRegistration(settings, readiness=readiness, recheck_every=30)
    registration.start()
    try:
        await asyncio.wait_for(registration.registered.wait(), 10)
        assert statuses(consul, name) == ["critical"]  # a new check's status, until it runs

        readiness.ok(KAFKA)
        for _ in range(100):
            if statuses(consul, name) == ["passing"]:
                break
            await asyncio.sleep(0.05)

        assert statuses(consul, name) == ["passing"]
    finally:
        await registration.stop()
