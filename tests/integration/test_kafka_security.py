"""A worker through a SASL_SSL listener, end to end, on a real broker of our own.

The broker is `invsync kafka start` with a SASL_SSL listener (SCRAM-SHA-256/512 and
PLAIN, one user) and an SSL listener that requires client certificates, both with a
certificate from a throw-away CA made here. The worker is told only the SASL_SSL
address, and the broker advertises only that listener's address to clients that came
through it, so everything the worker does (topic creation, consuming, producing, table
changelogs, commits) went through SASL_SSL.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import trustme
from aiokafka.admin import AIOKafkaAdminClient
from cryptography.hazmat.primitives import serialization

from invsync import localkafka
from streams.kafka import KafkaUnavailable, aiokafka_kwargs, check_connection
from streams.settings import load_settings
from tests.integration.inventory_support import read_all
from tests.integration.support import WorkerProcess, isolated_env, produce

pytestmark = pytest.mark.integration

USER = "invsync-svc"
PASSWORD = "Sc-r4m-secret-of-the-test"


@dataclass(frozen=True)
class SecuredBroker:
    sasl_ssl: str
    ssl: str
    ca: Path
    client_cert: Path
    client_key: Path
    start_output: str


def _make_pki(folder: Path) -> dict[str, Path]:
    ca = trustme.CA()
    broker = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("invsync-client")
    paths = {n: folder / f"{n}.pem" for n in ("ca", "broker", "broker-key", "client", "client-key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    broker.cert_chain_pems[0].write_to_path(str(paths["broker"]))
    # Kafka's PEM keystore takes PKCS#8 keys.
    key: Any = serialization.load_pem_private_key(broker.private_key_pem.bytes(), None)
    paths["broker-key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    client.cert_chain_pems[0].write_to_path(str(paths["client"]))
    client.private_key_pem.write_to_path(str(paths["client-key"]))
    return paths


def _kafka_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invsync", "kafka", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    folder = tmp_path_factory.mktemp("secured-kafka")
    pki = _make_pki(folder)
    localkafka.ensure_jars(log=False)
    sasl_port, ssl_port = localkafka.free_port(), localkafka.free_port()
    data = str(folder / "kafka")
    started = _kafka_cli(
        "start",
        *("--port", str(localkafka.free_port()), "--data-dir", data),
        *("--sasl-ssl-port", str(sasl_port), "--ssl-port", str(ssl_port)),
        *("--tls-cert", str(pki["broker"]), "--tls-key", str(pki["broker-key"])),
        *("--tls-ca", str(pki["ca"]), "--sasl-user", USER),
        KAFKA_SASL_PASSWORD=PASSWORD,
    )
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert PASSWORD not in started.stdout + started.stderr
        yield SecuredBroker(
            sasl_ssl=f"127.0.0.1:{sasl_port}",
            ssl=f"127.0.0.1:{ssl_port}",
            ca=pki["ca"],
            client_cert=pki["client"],
            client_key=pki["client-key"],
            start_output=started.stdout,
        )
    finally:
        stopped = _kafka_cli("stop", "--data-dir", data)
        assert stopped.returncode == 0, stopped.stderr


def _sasl_env(broker: SecuredBroker, mechanism: str, password: str = PASSWORD) -> dict[str, str]:
    return {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": mechanism,
        "KAFKA_SASL_USERNAME": USER,
        "KAFKA_SASL_PASSWORD": password,
        "KAFKA_SSL_CAFILE": str(broker.ca),
    }


def test_the_broker_announces_its_secured_listeners(secured: SecuredBroker) -> None:
    assert f"SASL_SSL listener on {secured.sasl_ssl}" in secured.start_output
    assert f"SSL listener on {secured.ssl}" in secured.start_output


async def test_worker_end_to_end_through_sasl_ssl(secured: SecuredBroker, tmp_path: Path) -> None:
    env = isolated_env(
        secured.sasl_ssl,
        tmp_path / "data",
        INVSYNC_DEBOUNCE_MS="0",
        **_sasl_env(secured, "SCRAM-SHA-512"),
    )
    # Our own clients (the test's producer and reader) connect with the same mapping.
    client = aiokafka_kwargs(load_settings(**_fields(env)))
    client.pop("bootstrap_servers")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start(ready=True)
    try:
        event = {
            "eventId": "sec-1",
            "type": "SNAPSHOT",
            "locationCode": "WH1",
            "channelSkuCode": "SKU-SEC",
            "quantity": 11,
            "occurredAt": "2026-11-27T10:00:00+05:30",
        }
        await produce(
            secured.sasl_ssl,
            env["INVSYNC_TOPIC_STOCK_EVENTS"],
            [(b"WH1:SKU-SEC", orjson.dumps(event))],
            **client,
        )
        out = await read_all(
            secured.sasl_ssl,
            env["INVSYNC_TOPIC_INVENTORY"],
            until=lambda r: len(r) >= 1,
            quiet_s=0,
            timeout=60,
            **client,
        )
        assert out, f"no inventory update through SASL_SSL; worker log:\n{worker.log_tail()}"
        assert out[0].key == b"WH1:SKU-SEC"
        assert orjson.loads(out[0].value)["quantity"] == 11
    finally:
        code = worker.stop()
    assert code == 0, worker.log_tail()
    assert PASSWORD not in worker.log_path.read_text(errors="replace")


def _fields(env: dict[str, str]) -> dict[str, str]:
    """Settings field names of the KAFKA_* variables in `env`."""
    return {k.lower(): v for k, v in env.items() if k.startswith("KAFKA_")}


async def _list_topics(settings_env: dict[str, str]) -> list[str]:
    settings = load_settings(**_fields(settings_env))
    await check_connection(settings, timeout_s=10)
    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings), request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(admin.start(), 15)
        return list(await admin.list_topics())
    finally:
        await admin.close()


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_each_sasl_mechanism_connects(secured: SecuredBroker, mechanism: str) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": secured.sasl_ssl, **_sasl_env(secured, mechanism)}
    assert isinstance(await _list_topics(env), list)


async def test_ssl_with_a_client_certificate(secured: SecuredBroker) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": secured.ssl,
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAFKA_SSL_CAFILE": str(secured.ca),
        "KAFKA_SSL_CERTFILE": str(secured.client_cert),
        "KAFKA_SSL_KEYFILE": str(secured.client_key),
    }
    assert isinstance(await _list_topics(env), list)
    without_cert = {k: v for k, v in env.items() if "CERTFILE" not in k and "KEYFILE" not in k}
    with pytest.raises(KafkaUnavailable, match="closed the connection"):
        await _list_topics(without_cert)


async def test_an_untrusted_certificate_is_named(secured: SecuredBroker) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": secured.sasl_ssl, **_sasl_env(secured, "SCRAM-SHA-256")}
    del env["KAFKA_SSL_CAFILE"]  # the system's trust does not know our CA
    with pytest.raises(KafkaUnavailable, match=r"not trusted.*KAFKA_SSL_CAFILE"):
        await _list_topics(env)


def _run_worker(
    env: dict[str, str], tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "invsync", "worker"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        start_new_session=True,
    )
    return done, time.monotonic() - started


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_a_wrong_password_fails_fast_with_one_line(
    secured: SecuredBroker, tmp_path: Path, mechanism: str
) -> None:
    wrong = "not-the-password-4321"
    env = isolated_env(secured.sasl_ssl, tmp_path / "data", **_sasl_env(secured, mechanism, wrong))
    done, took = _run_worker(env, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert took < 10, f"took {took:.1f} s"
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"invsync: cannot connect to Kafka at {secured.sasl_ssl} (SASL_SSL)")
    assert f"SASL authentication failed for user {USER!r} with {mechanism}" in line
    assert wrong not in line and PASSWORD not in line


@pytest.mark.parametrize("listener", ["refusing", "silent"])
def test_an_unreachable_broker_stops_the_worker_with_one_line(
    tmp_path: Path, listener: str
) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{server.getsockname()[1]}"
        if listener == "silent":
            server.listen(16)  # accepts connections, never answers
        else:
            server.close()
        env = isolated_env(address, tmp_path / "data")
        done, took = _run_worker(env, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"invsync: cannot connect to Kafka at {address} (PLAINTEXT): ")
    if listener == "silent":
        assert "no answer within 10 s" in lines[0]
        assert took < 15, f"took {took:.1f} s"
    else:
        assert "connection refused" in lines[0]
        assert took < 5, f"took {took:.1f} s"
