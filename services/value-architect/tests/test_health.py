"""Liveness and readiness, including the reason when not ready."""

import httpx
from fastapi import FastAPI


async def test_live(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")

    assert response.status_code == 200


async def test_ready_while_kafka_is_connected(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_not_ready_says_why(app: FastAPI, client: httpx.AsyncClient) -> None:
    app.state.readiness.failed("Kafka unreachable: connection refused")

    response = await client.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["reason"] == "Kafka unreachable: connection refused"
