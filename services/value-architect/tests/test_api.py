"""The HTTP API: validation, the event it publishes, and its errors."""

import json
import re

import httpx
import pytest
from fastapi import FastAPI

from value_architect.config import Settings

from .conftest import Recorded

PATH = "/api/v1/value-models"
GOOD = {"company_name": "Acme Corp", "industry": "Manufacturing"}


async def test_accepted_request_flows_through_kafka(
    client: httpx.AsyncClient, settings: Settings, recorded: Recorded
) -> None:
    response = await client.post(PATH, json=GOOD)

    assert response.status_code == 202
    body = response.json()
    assert re.fullmatch(r"[0-9a-f]{32}", body["trace_id"])
    [created] = recorded[settings.produces_topic]
    payload = json.loads(created.body)
    assert payload["company_name"] == "Acme Corp"
    assert payload["industry"] == "Manufacturing"
    assert payload["source_event_id"] == body["event_id"]
    assert payload["schema_version"] == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"industry": "Retail"}, "company_name"),
        ({"company_name": "", "industry": "Retail"}, "at least 1 character"),
        ({"company_name": 42, "industry": "Retail"}, "valid string"),
        ({**GOOD, "unexpected": True}, "Extra inputs are not permitted"),
        ([], "valid dictionary"),
    ],
)
async def test_bad_body_gets_422_with_reason(
    client: httpx.AsyncClient, recorded: Recorded, body: object, reason: str
) -> None:
    response = await client.post(PATH, json=body)

    assert response.status_code == 422
    assert reason in response.text
    assert not any(recorded.values())


async def test_body_that_is_not_json_gets_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        PATH, content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert "JSON" in response.text


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"company_name": NaN, "industry": "Retail"}', "valid string"),
        (b'{"company_name": "Acme", "industry": Infinity}', "valid string"),
        (b'{"company_name": "\\ud800", "industry": "Retail"}', "unicode"),
        (b'{"company_name": "Acme", "industry": "Retail", "\\udfff": 1}', "unicode"),
        (b'{"company_name": "\xff\xfe", "industry": "Retail"}', "UnicodeDecodeError"),
        (b"[" * 30_000, "RecursionError"),
        (b'{"company_name": 1' + b"0" * 5000 + b', "industry": "Retail"}', "digits"),
    ],
    ids=["nan", "infinity", "lone-surrogate", "surrogate-key", "bad-utf8", "deep", "huge-int"],
)
async def test_body_python_cannot_echo_or_parse_gets_422_not_500(
    client: httpx.AsyncClient, recorded: Recorded, body: bytes, reason: str
) -> None:
    headers = {"content-type": "application/json"}
    response = await client.post(PATH, content=body, headers=headers)

    assert response.status_code == 422
    assert reason in response.text
    assert not any(recorded.values())


async def test_oversized_body_gets_413(client: httpx.AsyncClient, settings: Settings) -> None:
    big = {**GOOD, "industry": "x" * settings.max_request_body_bytes}

    response = await client.post(PATH, json=big)

    assert response.status_code == 413


async def test_unknown_path_gets_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/nothing-here")

    assert response.status_code == 404


async def test_503_with_reason_while_kafka_is_down(app: FastAPI, client: httpx.AsyncClient) -> None:
    app.state.readiness.failed("Kafka unreachable: test")

    response = await client.post(PATH, json=GOOD)

    assert response.status_code == 503
    assert "Kafka unreachable" in response.json()["detail"]
