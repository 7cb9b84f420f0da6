"""Consul registration, against a small fake of Consul's agent HTTP API.

The real Consul (with ACLs) is exercised by the platform's integration tests;
here the retry and re-registration logic is driven quickly.
"""

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from faststream.kafka import TestKafkaBroker
from pydantic import SecretStr

from event_chassis.discovery import ConsulRegistration
from event_chassis.health import KAFKA, Readiness

from .example import Settings, create_service


class FakeConsul:
    """Just enough of /v1/agent to register, list and deregister services."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.port = port
        self.token = token  # with one, requests without it get 403, as with ACLs
        self.services: dict[str, dict[str, Any]] = {}
        self.registrations: list[dict[str, Any]] = []
        self.deregistered: list[str] = []
        self.checks_deregistered: list[str] = []
        self.tokens: list[str | None] = []
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_put("/v1/agent/service/register", self.register)
        app.router.add_put("/v1/agent/service/deregister/{service_id}", self.deregister)
        app.router.add_get("/v1/agent/services", self.list_services)
        app.router.add_put("/v1/agent/check/deregister/{check_id}", self.deregister_check)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def register(self, request: web.Request) -> web.Response:
        # Consul reads keys case-insensitively; py-consul sends them in lower case.
        body = {key.lower(): value for key, value in json.loads(await request.read()).items()}
        self.tokens.append(request.headers.get("X-Consul-Token"))
        if self.token and request.headers.get("X-Consul-Token") != self.token:
            return web.Response(status=403, text="Permission denied: token lacks service:write")
        self.registrations.append(body)
        self.services[body["id"]] = body
        return web.json_response(True)

    async def deregister(self, request: web.Request) -> web.Response:
        self.deregistered.append(request.match_info["service_id"])
        self.services.pop(request.match_info["service_id"], None)
        return web.json_response(True)

    async def deregister_check(self, request: web.Request) -> web.Response:
        self.checks_deregistered.append(request.match_info["check_id"])
        return web.json_response(True)

    async def list_services(self, request: web.Request) -> web.Response:
        return web.json_response(self.services)


@pytest.fixture
def consul_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def consul_settings(settings: Settings, consul_port: int) -> Settings:
    return settings.model_copy(
        update={
            "consul_enabled": True,
            "consul_http_addr": f"http://127.0.0.1:{consul_port}",
            "service_owner": "team-example",
        }
    )


@pytest.fixture
async def consul(consul_port: int) -> AsyncIterator[FakeConsul]:
    fake = FakeConsul(consul_port)
    await fake.start()
    yield fake
    await fake.stop()


async def test_registration_payload(consul: FakeConsul, consul_settings: Settings) -> None:
    registration = ConsulRegistration(consul_settings)
    registration.start()
    await asyncio.wait_for(registration.registered.wait(), 5)
    await registration.stop()

    [body] = consul.registrations
    assert body["name"] == "example"
    assert body["id"] == consul_settings.service_id
    assert body["port"] == consul_settings.http_port
    assert "prometheus" in body["tags"]
    assert body["meta"] == {"version": "1.2.3", "owner": "team-example", "metrics_path": "/metrics"}
    [check] = body["checks"]
    assert check["http"].endswith(f":{consul_settings.http_port}/health/ready")
    assert check["DeregisterCriticalServiceAfter"] == "1m"
    assert consul.deregistered == [consul_settings.service_id]


async def test_registers_once_consul_comes_up_and_again_after_it_forgets(
    consul_settings: Settings, consul_port: int
) -> None:
    registration = ConsulRegistration(consul_settings, recheck_every=0.05)
    registration.start()
    await asyncio.sleep(0.5)  # Consul is down: the service keeps trying
    assert not registration.registered.is_set()

    consul = FakeConsul(consul_port)
    await consul.start()
    try:
        await asyncio.wait_for(registration.registered.wait(), 5)
        consul.services.clear()  # a restarted dev agent forgets its services
        for _ in range(100):
            await asyncio.sleep(0.05)
            if consul.services:
                break
        assert list(consul.services) == [consul_settings.service_id]
        assert len(consul.registrations) == 2
    finally:
        await registration.stop()
        await consul.stop()


async def test_the_acl_token_is_sent(consul: FakeConsul, consul_settings: Settings) -> None:
    settings = consul_settings.model_copy(update={"consul_http_token": SecretStr("t0ken-for-test")})
    registration = ConsulRegistration(settings)
    registration.start()
    await asyncio.wait_for(registration.registered.wait(), 5)
    await registration.stop()

    assert consul.tokens == ["t0ken-for-test"]


async def test_a_refused_registration_says_the_token_is_the_problem(
    consul_settings: Settings, consul_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    consul = FakeConsul(consul_port, token="the-right-one")
    await consul.start()
    registration = ConsulRegistration(consul_settings, max_backoff=0.05)
    try:
        registration.start()
        await asyncio.sleep(0.3)
    finally:
        await registration.stop()
        await consul.stop()

    assert not registration.registered.is_set()
    assert "CONSUL_HTTP_TOKEN is missing or its policy lacks service:write" in caplog.text
    assert consul.services == {}


async def test_the_service_registers_on_start_and_deregisters_on_shutdown(
    consul: FakeConsul, consul_settings: Settings
) -> None:
    service = create_service(consul_settings)

    async with TestKafkaBroker(service.broker), service.app.router.lifespan_context(service.app):
        await asyncio.wait_for(service.registration.registered.wait(), 5)
        assert consul_settings.service_id in consul.services

    assert consul.services == {}
    assert consul.deregistered == [consul_settings.service_id]


async def test_the_instance_registers_again_as_passing_the_moment_it_is_ready(
    consul: FakeConsul, consul_settings: Settings
) -> None:
    """Consul would first run the check up to an interval later; ready instances need not wait."""
    readiness = Readiness()
    registration = ConsulRegistration(consul_settings, readiness=readiness, recheck_every=30)
    registration.start()
    try:
        await asyncio.wait_for(registration.registered.wait(), 5)
        [first] = consul.registrations
        readiness.ok(KAFKA)
        for _ in range(100):
            if len(consul.registrations) == 2:
                break
            await asyncio.sleep(0.02)
    finally:
        await registration.stop()

    assert "status" not in {key.lower() for key in first["checks"][0]}
    assert consul.checks_deregistered == [f"service:{consul_settings.service_id}"]
    [check] = consul.registrations[1]["checks"]
    assert check["Status"] == "passing"
