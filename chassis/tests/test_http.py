"""The HTTP side every service shares: bad bodies, Kafka down, health and metrics."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from event_chassis.health import KAFKA
from event_chassis.testing import TestService

from .example import Requested, Settings

PATH = "/api/v1/requests"
JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "JSON"),
        (b'{"name": NaN}', "valid string"),
        (b'{"name": Infinity}', "valid string"),
        (b'{"name": "\\ud800"}', "unicode"),
        (b'{"name": "acme", "\\udfff": 1}', "unicode"),
        (b'{"name": "\xff\xfe"}', "UnicodeDecodeError"),
        (b"[" * 30_000, "RecursionError"),
        (b'{"name": 1' + b"0" * 5000 + b"}", "digits"),
        (b"[]", "valid dictionary"),
    ],
    ids=[
        "not-json",
        "nan",
        "infinity",
        "lone-surrogate",
        "surrogate-key",
        "bad-utf8",
        "deep",
        "huge-int",
        "not-an-object",
    ],
)
async def test_a_body_python_cannot_parse_or_echo_gets_422_not_500(
    service: TestService, settings: Settings, body: bytes, reason: str
) -> None:
    response = await service.client.post(PATH, content=body, headers=JSON)

    assert response.status_code == 422
    assert reason in response.text
    assert not service.published(settings.consumes_topic)


async def test_an_oversized_body_gets_413(service: TestService, settings: Settings) -> None:
    big = {"name": "x" * settings.max_request_body_bytes}

    response = await service.client.post(PATH, json=big)

    assert response.status_code == 413


async def test_an_unknown_path_gets_404(service: TestService) -> None:
    response = await service.client.get("/api/v1/nothing-here")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


async def test_publishing_while_kafka_is_down_gets_503_with_the_reason(
    service: TestService, settings: Settings
) -> None:
    service.service.readiness.fail(KAFKA, "Kafka unreachable: connection refused")

    response = await service.client.post(PATH, json={"name": "acme"})

    assert response.status_code == 503
    assert response.json() == {"detail": "Kafka unreachable: connection refused"}
    assert not service.published(settings.consumes_topic)


async def test_live_and_ready(service: TestService) -> None:
    assert (await service.client.get("/health/live")).status_code == 200
    ready = await service.client.get("/health/ready")
    assert ready.json() == {"status": "ready"}


async def test_not_ready_says_why(service: TestService) -> None:
    readiness = service.service.readiness
    readiness.fail(KAFKA, "Kafka does not answer")
    readiness.fail("consumer x#0", "consumer x#0 has not joined its group yet")

    response = await service.client.get("/health/ready")

    assert response.status_code == 503
    assert response.json() == {
        "status": "not ready",
        "reason": "Kafka does not answer; consumer x#0 has not joined its group yet",
    }


def test_a_new_service_is_not_ready_until_kafka_and_every_consumer_are(
    settings: Settings,
) -> None:
    from . import example

    readiness = example.create_service(settings).readiness

    assert set(readiness.problems) == {
        KAFKA,
        *(f"consumer {settings.consumes_topic}#{i}" for i in range(2)),
    }


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(service: TestService) -> Samples:
    response = await service.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def total(metrics: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for (key, found), value in metrics.items() if key == name and wanted <= found)


async def test_messaging_and_http_metrics_are_exposed(
    service: TestService, settings: Settings
) -> None:
    topic, group = settings.consumes_topic, settings.consumer_group
    await service.send(topic, Requested(name="acme"))
    await service.send(topic, b"not json")
    await service.client.get("/health/live")

    metrics = await scrape(service)

    assert total(metrics, "messaging_consumed_messages_total", topic=topic, group=group) == 2
    dead = total(metrics, "messaging_dead_lettered_messages_total", reason="ValidationError")
    assert dead == 1
    assert total(metrics, "messaging_sent_messages_total", topic=settings.produces_topic) == 1
    assert total(metrics, "messaging_batch_duration_seconds_count", topic=topic) == 2
    assert total(metrics, "http_requests_total", route="/health/live", status="200") == 1
    assert total(metrics, "http_request_duration_seconds_count", route="/health/live") == 1


async def test_retries_are_counted_by_error_type(service: TestService, settings: Settings) -> None:
    from . import example

    example.behaviour.failures = [TimeoutError("slow")]

    await service.send(settings.consumes_topic, Requested(name="acme"))

    metrics = await scrape(service)
    assert total(metrics, "messaging_retries_total", reason="TimeoutError") == 1


async def test_unknown_paths_share_one_label(service: TestService) -> None:
    await service.client.get("/does/not/exist/1")
    await service.client.get("/does/not/exist/2")

    metrics = await scrape(service)

    assert total(metrics, "http_requests_total", route="unmatched", status="404") == 2
