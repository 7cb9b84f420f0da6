"""The chart's pod security holds for the real service: a read-only root, uid 10001.

The chart runs the service with readOnlyRootFilesystem, as the image's
non-root user, with only an emptyDir at /tmp writable. Here the rendered
service runs exactly so (tests/read_only_root.sh: a private mount namespace,
the root bind-mounted read-only, /tmp a fresh tmpfs, uid 10001), with the
environment the chart gives its pod, against the real Kafka and Jaeger: it
becomes ready, takes a request, serves its metrics and shuts down cleanly,
and never meets a read-only file system.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from platform_native.servers import free_ports

from .charts import chassis_python, one, package_of, pod_environment, template
from .conftest import Platform
from .kafka_clients import create_topics
from .rendering import render

pytestmark = [pytest.mark.infra, pytest.mark.k8s]

SCRIPT = Path(__file__).with_name("read_only_root.sh")


@dataclass
class Pod:
    url: str
    output: Path
    process: subprocess.Popen[bytes]  # the service itself: every step of the script execs


@pytest.fixture(scope="module")
def pod(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    """The service in its chart's pod environment, under a read-only root."""
    workdir = tmp_path_factory.mktemp("read-only")
    service = render(workdir)
    python = chassis_python(workdir)
    (port,) = free_ports(1)
    # Topics and group of its own: the session's Kafka is shared with other tests.
    prefix = f"read-only-root-{uuid.uuid4().hex[:6]}"
    topics = {"consumesTopic": "requested", "producesTopic": "created", "deadLetterTopic": "dlq"}
    create_topics(platform.kafka, [f"{prefix}.{suffix}" for suffix in topics.values()])
    objects = template(
        service / "chart",
        None,
        *(f"kafka.{value}={prefix}.{suffix}" for value, suffix in topics.items()),
        f"kafka.consumerGroup={prefix}",
        f"kafka.bootstrapServers={platform.kafka.bootstrap}",
        f"telemetry.otlpEndpoint={platform.jaeger.otlp_http}",
        f"http.port={port}",
    )
    env = pod_environment(objects)
    env["HTTP_HOST"] = "127.0.0.1"  # the pod's 0.0.0.0, but loopback only on a shared host
    env["OTEL_LOGS_EXPORTER"] = "none"  # Jaeger takes traces only
    [container] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert [mount["mountPath"] for mount in container["volumeMounts"]] == ["/tmp"]
    src = service / "src"
    command = [
        "unshare", "--mount", str(SCRIPT), str(python.parent.parent), str(src), "--",
        "/usr/bin/env", "-i", f"PYTHONPATH={src}", "PYTHONDONTWRITEBYTECODE=1",
        *(f"{name}={value}" for name, value in env.items()),
        str(python), "-m", package_of(service),
    ]  # fmt: skip
    output = workdir / "service.log"
    with output.open("w") as log:
        process = subprocess.Popen(command, cwd="/", stdout=log, stderr=subprocess.STDOUT)
    try:
        yield Pod(f"http://127.0.0.1:{port}", output, process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def wait_ready(pod: Pod, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert pod.process.poll() is None, pod.output.read_text()[-4000:]
        try:
            if httpx.get(f"{pod.url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"not ready after {timeout:.0f}s:\n{pod.output.read_text()[-4000:]}")


def test_the_service_works_with_a_read_only_root_as_uid_10001(pod: Pod) -> None:
    wait_ready(pod)
    answer = httpx.post(
        f"{pod.url}/api/v1/value-models", json={"company_name": "Acme", "industry": "tools"}
    )
    metrics = httpx.get(f"{pod.url}/metrics")
    status = Path(f"/proc/{pod.process.pid}/status").read_text()

    assert answer.status_code == 202, answer.text
    assert metrics.status_code == 200
    assert "Uid:\t10001\t10001" in status
    log = pod.output.read_text()
    assert "Read-only file system" not in log and "Permission denied" not in log, log[-4000:]


def test_it_stops_cleanly_on_sigterm(pod: Pod) -> None:
    wait_ready(pod)
    pod.process.send_signal(signal.SIGTERM)

    # uvicorn re-raises SIGTERM once its graceful shutdown is done.
    assert pod.process.wait(timeout=60) in (0, -signal.SIGTERM)
    log = pod.output.read_text()
    assert "Application shutdown complete" in log, log[-4000:]
    assert "Traceback" not in log and "Read-only file system" not in log, log[-4000:]
