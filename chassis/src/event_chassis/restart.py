"""A rotated Kafka password file: the service stops and starts again in place to use it.

aiokafka keeps the SASL password inside every client it builds (FastStream's producer,
admin client and consumers, the results' and the relay's producers) and offers no way
to change it, and Kafka keeps connections that authenticated with the old password.
So when the password's file (`KAFKA_SASL_PASSWORD_FILE` or `SECRETS_DIR`) holds a new
password, the service stops as it does on SIGTERM (the consumers drain, offsets and
the outbox are kept, Consul is told) and then runs its own command again (`os.execv`):
the same process ID, so whatever supervises it sees no exit, and every setting is read
anew. A Kubernetes pod is restarted by Reloader as well; this covers every other way a
service runs.
"""

import logging
import os
import sys
from typing import NoReturn

import uvicorn

from .secrets import SecretFile, SecretsError
from .service import Service

logger = logging.getLogger(__name__)

CHECK_SECONDS = 5  # how often the password's file is looked at (a stat, no read)


class KafkaPasswordWatch:
    """uvicorn's `callback_notify`: called every CHECK_SECONDS while the server runs."""

    def __init__(self, server: uvicorn.Server, service: Service) -> None:
        self.server = server
        self.service = service
        settings = service.settings
        sasl = settings.kafka_security_protocol.startswith("SASL")
        self.file = SecretFile.of("kafka_sasl_password") if sasl else None
        self.in_use = settings.kafka_sasl_password.get_secret_value()
        self.restarting = False

    def configure(self, config: uvicorn.Config) -> None:
        if self.file is not None:
            config.callback_notify = self
            config.timeout_notify = CHECK_SECONDS

    async def __call__(self) -> None:
        if self.file is None or self.restarting:
            return
        try:
            value = self.file.changed()
        except SecretsError as error:  # unreadable for now: keep the password in hand
            logger.error("%s; keeping the Kafka password in use", error)
            return
        if value is None or value == self.in_use:
            return
        logger.warning(
            "the Kafka password file %s holds a new password: stopping, then starting "
            "again in place to connect with it",
            self.file.path,
        )
        self.restarting = True
        self.service.begin_drain()
        self.server.should_exit = True


def start_again() -> NoReturn:
    """Replace this process with a fresh run of the command that started it."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, sys.orig_argv)  # noqa: S606 (this very command, no shell)
