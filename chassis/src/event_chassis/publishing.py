"""Typed, traced publishing for a service's own code (its HTTP API, say).

`Service.publisher(topic, EventType)` returns a `Publisher` whose `publish`
sends one event, keyed, with the current trace context in its headers, inside
a producer span; consumers downstream continue the same trace. The topic and
its payload schema appear in the service's AsyncAPI document.
"""

from typing import Generic, TypeVar

from faststream.kafka.publisher import DefaultPublisher
from opentelemetry import trace
from prometheus_client import Counter
from pydantic import BaseModel

from .health import KAFKA, KafkaError, Readiness, Writes
from .tracing import inject, messaging_attributes

E = TypeVar("E", bound=BaseModel)

JSON = "application/json"


class Publisher(Generic[E]):
    """Publishes events of one type to one topic."""

    def __init__(
        self,
        publisher: DefaultPublisher,
        topic: str,
        tracer: trace.Tracer,
        sent: Counter,
        readiness: Readiness,
        writes: Writes,
    ) -> None:
        self.publisher = publisher
        self.topic = topic
        self.tracer = tracer
        self.sent = sent.labels(topic)
        self.readiness = readiness
        self.writes = writes

    async def publish(self, event: E, *, key: bytes | None = None) -> None:
        """Send `event` and wait until Kafka has it; `KafkaError` while Kafka is down."""
        if KAFKA in self.readiness.problems:
            raise KafkaError(self.readiness.problems[KAFKA])
        attributes = messaging_attributes("send", self.topic)
        with self.tracer.start_as_current_span(
            f"send {self.topic}", kind=trace.SpanKind.PRODUCER, attributes=attributes
        ):
            headers = inject({"content-type": JSON})
            with self.writes.waiting():
                await self.publisher.publish(
                    event.model_dump_json().encode(), key=key, headers=headers
                )
        self.writes.acknowledged()
        self.sent.inc()
