"""Secrets: files before OpenBao before the environment, and a warning for the environment."""

from pathlib import Path

import pytest
import uvicorn

from event_chassis import Service, secrets
from event_chassis.restart import CHECK_SECONDS, KafkaPasswordWatch
from event_chassis.security import kafka_security
from event_chassis.testing import test_settings

from .example import Settings


@pytest.fixture(autouse=True)
def no_vault(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VAULT_ADDR", "SECRETS_DIR", "KAFKA_SASL_PASSWORD_FILE", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)


def secret_file(folder: Path, name: str, value: str) -> Path:
    path = folder / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def test_a_file_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "from-the-environment")
    path = secret_file(tmp_path, "password", "from-a-file")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(path))

    settings = Settings(_env_file=None)

    assert settings.kafka_sasl_password.get_secret_value() == "from-a-file"
    assert settings.secret_sources["kafka_sasl_password"] == f"file {path}"
    warnings = secrets.environment_warnings(settings.secret_sources)
    assert not [line for line in warnings if "KAFKA_SASL_PASSWORD" in line]


def test_the_secrets_dir_holds_files_named_like_the_fields(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret_file(tmp_path, "consul_http_token", "a-token")
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))

    settings = Settings(_env_file=None)

    assert settings.consul_http_token.get_secret_value() == "a-token"
    assert settings.kafka_sasl_password.get_secret_value() == ""  # no file: the default


def test_a_secret_from_the_environment_is_warned_about_without_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "plain-value")

    settings = Settings(_env_file=None)
    [warning] = secrets.environment_warnings(settings.secret_sources)

    assert warning.startswith("KAFKA_SASL_PASSWORD is read from the environment")
    assert "plain-value" not in warning
    assert getattr(kafka_security(settings), "password", None) == "plain-value"


def test_a_missing_secret_file_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", "/nonexistent/password")

    with pytest.raises(secrets.SecretsError) as raised:
        Settings(_env_file=None)

    assert str(raised.value) == (
        "cannot read KAFKA_SASL_PASSWORD from /nonexistent/password: No such file or directory"
    )


def test_an_unreachable_openbao_at_start_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:9")
    monkeypatch.setenv("VAULT_AUTH", "token")
    monkeypatch.setenv("VAULT_TOKEN_FILE", "/dev/null")

    with pytest.raises(secrets.SecretsError) as raised:
        Settings(_env_file=None)

    assert str(raised.value) == (
        "OpenBao unreachable at http://127.0.0.1:9 (looking the token up): ConnectionError"
    )


def test_a_rotated_secret_file_is_read_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Rewritten in place, or swapped as Kubernetes swaps a mounted Secret (a symlink to
    a new directory): either is seen; a file missing for a moment is not a change."""
    first = tmp_path / "v1"
    first.mkdir()
    (first / "consul_http_token").write_text("token-1\n")
    (tmp_path / "..data").symlink_to(first)
    mounted = tmp_path / "consul_http_token"
    mounted.symlink_to(tmp_path / "..data" / "consul_http_token")
    monkeypatch.setenv("CONSUL_HTTP_TOKEN_FILE", str(mounted))
    watched = secrets.SecretFile.of("consul_http_token")
    assert watched is not None
    assert watched.changed() is None

    second = tmp_path / "v2"
    second.mkdir()
    (second / "consul_http_token").write_text("token-2\n")
    (tmp_path / "..data_tmp").symlink_to(second)
    (tmp_path / "..data_tmp").replace(tmp_path / "..data")
    assert watched.changed() == "token-2"
    assert watched.changed() is None

    (second / "consul_http_token").write_text("token-three\n")
    assert watched.changed() == "token-three"
    (second / "consul_http_token").unlink()
    assert watched.changed() is None


def test_without_a_file_nothing_is_watched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONSUL_HTTP_TOKEN_FILE", raising=False)
    monkeypatch.delenv("SECRETS_DIR", raising=False)
    assert secrets.SecretFile.of("consul_http_token") is None


async def test_a_new_kafka_password_in_its_file_stops_the_service_to_start_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The same password written again is no reason to stop; a new one is."""
    path = secret_file(tmp_path, "kafka_sasl_password", "password-1")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(path))
    settings = test_settings(
        Settings, kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="svc"
    )
    service = Service(settings)
    config = uvicorn.Config(service.app)
    server = uvicorn.Server(config)
    watch = KafkaPasswordWatch(server, service)
    watch.configure(config)
    assert config.callback_notify is not None
    assert config.timeout_notify == CHECK_SECONDS

    await watch()
    secret_file(tmp_path, "kafka_sasl_password", "password-1")  # rewritten, unchanged
    await watch()
    assert not watch.restarting
    assert not server.should_exit

    secret_file(tmp_path, "kafka_sasl_password", "password-two")
    await watch()
    assert watch.restarting
    assert server.should_exit


def test_without_sasl_the_password_file_is_not_watched(tmp_path: Path) -> None:
    service = Service(test_settings(Settings))
    config = uvicorn.Config(service.app)
    KafkaPasswordWatch(uvicorn.Server(config), service).configure(config)
    assert config.callback_notify is None
