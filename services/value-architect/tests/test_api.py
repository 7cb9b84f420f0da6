# Team-owned: team-value edits this file; template updates (cruft update) skip it.
"""The HTTP API: the request it accepts, the event it publishes, the bodies it refuses."""

import re

import pytest
from event_chassis.testing import TestService

from value_architect.settings import Settings

PATH = "/api/v1/value-models"
GOOD = {"company_name": "Acme Corp", "industry": "Manufacturing"}


async def test_an_accepted_request_is_saved_then_published_and_handled(
    service: TestService, settings: Settings
) -> None:
    response = await service.client.post(PATH, json=GOOD)

    assert response.status_code == 201
    body = response.json()
    assert re.fullmatch(r"[0-9a-f]{32}", body["trace_id"])
    assert await service.publish_outbox() == 1  # the request's event, once committed
    [request] = service.published(settings.consumes_topic)
    assert request.json()["event_id"] == body["event_id"]
    assert await service.publish_outbox() == 1  # the handler's answer
    [result] = service.published(settings.produces_topic)
    assert result.json()["source_event_id"] == body["event_id"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"industry": "Retail"}, "company_name"),
        ({"company_name": "", "industry": "Retail"}, "at least 1 character"),
        ({**GOOD, "unexpected": True}, "Extra inputs are not permitted"),
    ],
)
async def test_a_bad_body_gets_422_with_the_reason(
    service: TestService, settings: Settings, body: object, reason: str
) -> None:
    response = await service.client.post(PATH, json=body)

    assert response.status_code == 422
    assert reason in response.text
    assert await service.publish_outbox() == 0
    assert not service.published(settings.consumes_topic)
