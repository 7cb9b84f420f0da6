"""Prometheus metrics: HTTP requests and FastStream's message counters."""

import httpx
from faststream.kafka import KafkaBroker
from prometheus_client.parser import text_string_to_metric_families

from value_architect.config import Settings

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(metrics: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for (key, found), value in metrics.items() if key == name and wanted <= found)


async def test_message_and_http_metrics_are_exposed(
    client: httpx.AsyncClient, broker: KafkaBroker, settings: Settings
) -> None:
    await broker.publish({"company_name": "Acme", "industry": "Retail"}, settings.consumes_topic)
    await client.get("/health/live")

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    metrics = samples(response.text)
    processed = total(
        metrics,
        "faststream_received_processed_messages_total",
        app_name=settings.otel_service_name,
        handler=settings.consumes_topic,
        status="acked",
    )
    assert processed == 1
    published = total(
        metrics, "faststream_published_messages_total", destination=settings.produces_topic
    )
    assert published >= 1
    http = total(metrics, "http_requests_total", method="GET", route="/health/live", status="200")
    assert http == 1
    assert total(metrics, "http_request_duration_seconds_count", route="/health/live") == 1


async def test_unknown_paths_share_one_label(client: httpx.AsyncClient) -> None:
    await client.get("/does/not/exist/1")
    await client.get("/does/not/exist/2")

    metrics = samples((await client.get("/metrics")).text)

    assert total(metrics, "http_requests_total", route="unmatched", status="404") == 2
