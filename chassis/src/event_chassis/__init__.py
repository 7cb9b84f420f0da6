"""event-chassis: the plumbing every event-driven service shares.

A service is a `ServiceSettings` subclass, a few handlers and routes, and a
`create_service()` that declares them on a `Service`; `run(create_service)`
serves it. Everything else (Kafka batches and commits, retries and dead
letters, rebalances, graceful drain, Consul, tracing, logs, metrics, health,
security) is here, versioned: a fix reaches every service by a version bump.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("event-chassis")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

from .health import KafkaError
from .publishing import Publisher
from .retry import DependencyUnavailableError, PoisonMessageError, RetryPolicy
from .server import run
from .service import Service
from .settings import ServiceSettings
from .tracing import current_trace_id

__all__ = [
    "DependencyUnavailableError",
    "KafkaError",
    "PoisonMessageError",
    "Publisher",
    "RetryPolicy",
    "Service",
    "ServiceSettings",
    "__version__",
    "current_trace_id",
    "run",
]
