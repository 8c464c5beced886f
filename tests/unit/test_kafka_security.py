"""Kafka security settings: validation, and the one mapping to aiokafka and Faust."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import faust
import pytest
import trustme
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from streams.app import faust_config
from streams.kafka import (
    KafkaUnavailable,
    aiokafka_kwargs,
    check_connection,
    faust_credentials,
    security_kwargs,
)
from streams.settings import SettingsError, load_settings

PASSWORD = "pa55-w0rd-never-shown"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("INVSYNC_", "KAFKA_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throw-away CA, and a client certificate and key it signed."""
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    client = ca.issue_cert("invsync-client")
    paths = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key", "other_key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    client.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    client.private_key_pem.write_to_path(str(paths["key"]))
    trustme.CA().issue_cert("x").private_key_pem.write_to_path(str(paths["other_key"]))
    return paths


def _sasl_env(monkeypatch: pytest.MonkeyPatch, ca: Path, **extra: str) -> None:
    values = {
        "KAFKA_BOOTSTRAP_SERVERS": "broker-1.example:9093",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "invsync",
        "KAFKA_SASL_PASSWORD": PASSWORD,
        "KAFKA_SSL_CAFILE": str(ca),
        **extra,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_default_is_plaintext_and_maps_to_no_credentials() -> None:
    s = load_settings()
    assert s.kafka_security_protocol == "PLAINTEXT"
    assert security_kwargs(s) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(s) is None
    assert faust_config(s)["broker_credentials"] is None


def test_sasl_ssl_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, pki: dict[str, Path]
) -> None:
    _sasl_env(monkeypatch, pki["ca"], KAFKA_SECURITY_PROTOCOL="sasl_ssl")
    s = load_settings()
    assert s.kafka_security_protocol == "SASL_SSL"
    assert PASSWORD not in repr(s) and PASSWORD not in str(s)

    kwargs = aiokafka_kwargs(s)
    assert kwargs["bootstrap_servers"] == ["broker-1.example:9093"]
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "invsync"
    assert kwargs["sasl_plain_password"] == PASSWORD
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert kwargs["ssl_context"].check_hostname
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED

    # What Faust's aiokafka driver gives its consumer, producer and topic creation:
    creds = faust_config(s)["broker_credentials"]
    assert isinstance(creds, faust.SASLCredentials)
    assert PASSWORD not in repr(creds)
    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("invsync", PASSWORD)
    assert isinstance(auth["ssl_context"], ssl.SSLContext)


def test_sasl_plaintext_and_ssl_map_for_faust(
    monkeypatch: pytest.MonkeyPatch, pki: dict[str, Path]
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "u")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", PASSWORD)
    auth = credentials_to_aiokafka_auth(faust_credentials(load_settings()))
    assert auth["security_protocol"] == "SASL_PLAINTEXT"
    assert auth["sasl_mechanism"] == "PLAIN"
    assert auth["ssl_context"] is None
    assert "ssl_context" not in security_kwargs(load_settings())

    for name in ("KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", str(pki["ca"]))
    monkeypatch.setenv("KAFKA_SSL_CERTFILE", str(pki["cert"]))
    monkeypatch.setenv("KAFKA_SSL_KEYFILE", str(pki["key"]))
    s = load_settings()
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SSLCredentials)
    assert credentials_to_aiokafka_auth(creds)["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in security_kwargs(s)
    assert security_kwargs(s)["security_protocol"] == "SSL"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u"},
            "needs KAFKA_SASL_MECHANISM, KAFKA_SASL_PASSWORD",
        ),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "KAFKA_SASL_MECHANISM": "GSSAPI",
                "KAFKA_SASL_USERNAME": "u",
                "KAFKA_SASL_PASSWORD": PASSWORD,
            },
            "KAFKA_SASL_MECHANISM",
        ),
        (
            {"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": PASSWORD},
            "KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD set but KAFKA_SECURITY_PROTOCOL is PLAINTEXT",
        ),
        ({"KAFKA_SSL_CAFILE": "{ca}"}, "KAFKA_SSL_CAFILE set but KAFKA_SECURITY_PROTOCOL"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/no/such/ca.pem"},
            "KAFKA_SSL_CAFILE",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "{key}"},
            "KAFKA_SSL_CAFILE cannot be loaded",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_KEYFILE": "{key}"},
            "KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE",
        ),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SSL",
                "KAFKA_SSL_CERTFILE": "{cert}",
                "KAFKA_SSL_KEYFILE": "{other_key}",
            },
            "KAFKA_SSL_CERTFILE/KAFKA_SSL_KEYFILE cannot be loaded",
        ),
    ],
)
def test_bad_security_settings_are_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, pki: dict[str, Path], env: dict[str, str], says: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(**{k: str(v) for k, v in pki.items()}))
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert says in message
    assert "\n" not in message
    assert PASSWORD not in message


def test_a_bad_password_value_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "u")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("INVSYNC_WEB_PORT", "not-a-port")  # some other error
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert PASSWORD not in str(caught.value)


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """An address that accepts TCP connections and never says a word."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"127.0.0.1:{server.getsockname()[1]}"


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
def test_a_silent_address_fails_within_the_timeout_naming_it(
    silent_listener: str, protocol: str
) -> None:
    s = load_settings(kafka_bootstrap_servers=silent_listener, kafka_security_protocol=protocol)
    started = time.monotonic()
    with pytest.raises(KafkaUnavailable) as caught:
        asyncio.run(check_connection(s, timeout_s=1.0))
    assert time.monotonic() - started < 3.0
    message = str(caught.value)
    assert silent_listener in message
    assert "no answer within 1 s" in message
    assert f"({protocol})" in message


def test_unreachable_addresses_name_each_cause() -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{sock.getsockname()[1]}"
    s = load_settings(kafka_bootstrap_servers=f"{closed},no-such-host.invalid:9092")
    with pytest.raises(KafkaUnavailable) as caught:
        asyncio.run(check_connection(s, timeout_s=5.0))
    message = str(caught.value)
    assert f"{closed}: connection refused" in message
    assert "no-such-host.invalid:9092: cannot resolve the host" in message
