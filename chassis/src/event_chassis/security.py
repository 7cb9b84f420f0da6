"""Kafka TLS and SASL, switched on through environment variables alone.

The same settings make FastStream's security object (the broker: consumers and
the HTTP API's publishers) and aiokafka's keyword arguments (the producer of
the handlers' results, see `results`).
"""

import ssl
from typing import Any

from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)

from .settings import ServiceSettings

SASL = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


def _tls(settings: ServiceSettings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol not in {"SSL", "SASL_SSL"}:
        return None
    return ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)


def kafka_security(settings: ServiceSettings) -> BaseSecurity | None:
    """FastStream's security object for `KAFKA_SECURITY_PROTOCOL`, or None for plaintext."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = _tls(settings)
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    return SASL[settings.kafka_sasl_mechanism](
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        ssl_context=context,
        use_ssl=context is not None,
    )


def aiokafka_security(settings: ServiceSettings) -> dict[str, Any]:
    """The same as aiokafka's own keyword arguments ({} for plaintext)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    found: dict[str, Any] = {"security_protocol": protocol, "ssl_context": _tls(settings)}
    if protocol.startswith("SASL"):
        found |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password.get_secret_value(),
        }
    return found
