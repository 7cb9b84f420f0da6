"""Readiness probes and small HTTP helpers for servers on loopback.

A server is only reported as started once a real probe passes: an HTTP
answer from its API, or for Kafka the ApiVersions request every client sends
first. Only the standard library is used.
"""

from __future__ import annotations

import json
import socket
import struct
import urllib.error
import urllib.request
from typing import Any

from platform_native.processes import HOST

# Talks to our loopback servers directly, even if HTTP(S)_PROXY is set.
_LOOPBACK_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_request(
    method: str,
    url: str,
    body: bytes | None = None,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """Send one HTTP request; return (status, body) even for 4xx/5xx answers."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _LOOPBACK_OPENER.open(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET ``url``; return (status, body) even for 4xx/5xx answers."""
    return http_request("GET", url, timeout=timeout)


def http_json(
    method: str,
    url: str,
    payload: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any]:
    """Send ``payload`` as JSON; return the status and the decoded JSON answer.

    A body that is not JSON (e.g. an error message) is returned as text.
    """
    body = None if payload is None else json.dumps(payload).encode()
    status, raw = http_request(method, url, body, timeout, headers)
    try:
        return status, json.loads(raw) if raw.strip() else None
    except ValueError:
        return status, raw.decode(errors="replace")


def tcp_accepts(port: int, host: str = HOST, timeout: float = 1.0) -> bool:
    """Return True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        data += chunk
    return data


def kafka_api_versions_ok(port: int, host: str = HOST, timeout: float = 2.0) -> bool:
    """Send a Kafka ApiVersions (v0) request; True if the broker answers without error.

    This is the first request every Kafka client sends, so a good answer means
    the broker is really serving the protocol, not just accepting TCP.
    """
    client_id = b"platform-native"
    api_key, api_version, correlation_id = 18, 0, 7
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(header)) + header)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            body = _recv_exact(sock, size)
    except OSError:
        return False
    answered_id, error_code = struct.unpack(">ih", body[:6])
    return bool(answered_id == correlation_id and error_code == 0)
