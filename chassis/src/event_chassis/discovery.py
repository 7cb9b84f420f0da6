"""Registration in Consul, kept alive in the background.

The service must start and serve even when Consul is down, so registration
runs as a background task that retries with capped exponential backoff. Once
registered it keeps checking, and registers again if the agent forgot the
service (for example after a Consul restart).

Consul runs a new HTTP check only after a random part of its interval, so an
instance registered at start would wait up to CONSUL_CHECK_INTERVAL before it
gets traffic. Instead the instance registers again the moment it is ready,
with its check passing from the start; Consul's check takes over from there.
Consul keeps the status of a check that is registered again, so the critical
check goes first.
"""

import asyncio
import logging
from collections.abc import Callable
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit

import consul.aio
from consul.exceptions import ACLPermissionDenied

from .health import Readiness
from .secrets import SecretFile, SecretsError
from .settings import ServiceSettings

logger = logging.getLogger(__name__)

PROMETHEUS_TAG = "prometheus"  # Prometheus' consul_sd_configs scrapes services with this tag

ConsulFactory = Callable[[ServiceSettings], Any]


def check_id(settings: ServiceSettings) -> str:
    """The instance's health check (Consul's own default for a service's one check)."""
    return f"service:{settings.service_id}"


def registration(settings: ServiceSettings, *, ready: bool = False) -> dict[str, Any]:
    """Keyword arguments for py-consul's `agent.service.register`."""
    address = settings.advertise_address
    check = {
        "CheckID": check_id(settings),
        "http": f"http://{address}:{settings.http_port}/health/ready",
        "interval": settings.consul_check_interval,
        "timeout": "2s",
        "DeregisterCriticalServiceAfter": settings.consul_deregister_critical_after,
    }
    if ready:
        check["Status"] = "passing"
    return {
        "name": settings.otel_service_name,
        "service_id": settings.service_id,
        "address": address,
        "port": settings.http_port,
        "tags": [PROMETHEUS_TAG, "faststream", f"version-{settings.service_version}"],
        "meta": {
            "version": settings.service_version,
            "owner": settings.service_owner,
            "metrics_path": "/metrics",
        },
        "check": check,
    }


def consul_client(settings: ServiceSettings) -> Any:
    address = settings.consul_http_addr
    url = urlsplit(address if "//" in address else f"http://{address}")
    return consul.aio.Consul(
        host=url.hostname,
        port=url.port or 8500,
        scheme=url.scheme,
        token=settings.consul_http_token.get_secret_value() or None,
    )


class ConsulRegistration:
    """Registers this instance on start and deregisters it on stop."""

    def __init__(
        self,
        settings: ServiceSettings,
        client_factory: ConsulFactory = consul_client,
        *,
        readiness: Readiness | None = None,
        max_backoff: float = 2.0,
        recheck_every: float = 5.0,
    ) -> None:
        self.settings = settings
        self.client_factory = client_factory
        self.readiness = readiness
        self.max_backoff = max_backoff
        self.recheck_every = recheck_every
        self.registered = asyncio.Event()
        self.token_file = SecretFile.of("consul_http_token")  # CONSUL_HTTP_TOKEN_FILE
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._client = self.client_factory(self.settings)
        self._task = asyncio.create_task(self._keep_registered(), name="consul-registration")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if self._client is None:
            return
        self._use_current_token()
        try:
            async with asyncio.timeout(2.0):
                await self._client.agent.service.deregister(self.settings.service_id)
            logger.info("Deregistered %s from Consul", self.settings.service_id)
        except Exception as error:  # Consul down: DeregisterCriticalServiceAfter cleans up
            logger.warning("Could not deregister from Consul: %r", error)
        finally:
            await self._client.close()

    async def _keep_registered(self) -> None:
        delay = 0.1
        registered_ready = False
        while True:
            self._use_current_token()
            try:
                ready = self.readiness is not None and self.readiness.ready
                registered = await self._is_registered()
                if registered and ready and not registered_ready:
                    # Registered again, the check would keep its status (critical).
                    await self._client.agent.check.deregister(check_id(self.settings))
                if not registered or (ready and not registered_ready):
                    await self._client.agent.service.register(
                        **registration(self.settings, ready=ready)
                    )
                    registered_ready = ready
                    state = "ready" if ready else "not ready yet"
                    logger.info("Registered %s in Consul (%s)", self.settings.service_id, state)
                self.registered.set()
                delay = 0.1
                await self._pause(until_ready=not registered_ready)
            except asyncio.CancelledError:
                raise
            except ACLPermissionDenied as error:
                # Retrying helps only once an operator fixes the token's policy: say so loudly.
                self.registered.clear()
                logger.error(
                    "Consul refused to register %s: CONSUL_HTTP_TOKEN is missing or its policy "
                    "lacks service:write for %r (%s); retrying in %.1fs",
                    self.settings.service_id,
                    self.settings.otel_service_name,
                    error,
                    self.max_backoff,
                )
                await asyncio.sleep(self.max_backoff)
            except Exception as error:
                self.registered.clear()
                logger.warning("Consul unreachable (%r); retrying in %.1fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)

    def _use_current_token(self) -> None:
        """A rotated token file's new token, for every later request (py-consul sends
        `Consul.token` with each one)."""
        if self.token_file is None:
            return
        try:
            token = self.token_file.changed()
        except SecretsError as error:
            logger.warning("%s; keeping the Consul token in hand", error)
            return
        if token is not None:
            self._client.token = token or None
            logger.info("Consul token read again from %s", self.token_file.path)

    async def _pause(self, *, until_ready: bool) -> None:
        """Wait to check again; while not registered as ready, wake up when it is."""
        if not until_ready or self.readiness is None:
            await asyncio.sleep(self.recheck_every)
            return
        with suppress(TimeoutError):
            async with asyncio.timeout(self.recheck_every):
                await self.readiness.became_ready.wait()

    async def _is_registered(self) -> bool:
        services = await self._client.agent.services()
        return self.settings.service_id in services
