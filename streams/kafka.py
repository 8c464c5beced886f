"""How every Kafka client of invsync connects: security settings and the start-up check.

One mapping from `Settings` (DESIGN.md "Running it": `KAFKA_SECURITY_PROTOCOL`,
`KAFKA_SASL_*`, `KAFKA_SSL_*`) to aiokafka's keyword arguments and to Faust's
`broker_credentials`, so Faust's consumer, producer and topic creation and our own
aiokafka clients all connect the same way.

`check_connection` reaches the bootstrap servers once before anything else does, so a
worker that cannot connect stops with one line naming the broker and the cause
(refused, unresolvable, TLS not trusted, credentials rejected, no answer) instead of a
traceback or a silent 30 s wait. No message carries the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka.conn import create_conn
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.protocol.metadata import MetadataRequest

from connectors.errors import InvsyncError

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

    from streams.settings import Settings

CONNECT_TIMEOUT_S = 10.0


class KafkaUnavailable(InvsyncError):
    """No bootstrap server could be reached and answered; the message is one line."""


def bootstrap_list(servers: str) -> list[str]:
    return [s.strip() for s in servers.split(",") if s.strip()]


def tls_context(
    cafile: Path | str | None = None,
    certfile: Path | str | None = None,
    keyfile: Path | str | None = None,
) -> ssl.SSLContext:
    """A client TLS context: the CA file (else the system's trust), the client certificate.

    Hostnames are checked. Encrypted keys are refused rather than prompted for.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile, password=_no_password)
    return context


def _no_password() -> str:
    raise ssl.SSLError("the key is encrypted (not supported: give an unencrypted key)")


def _uses_tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def _uses_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not _uses_tls(settings):
        return None
    return tls_context(
        settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile
    )


def security_kwargs(settings: Settings) -> dict[str, Any]:
    """aiokafka's security arguments (any client: producer, consumer, admin)."""
    kwargs: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if _uses_sasl(settings):
        assert settings.kafka_sasl_password is not None  # validated by Settings
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return kwargs


def aiokafka_kwargs(settings: Settings) -> dict[str, Any]:
    """Bootstrap servers and security arguments for an aiokafka client of ours."""
    return {
        "bootstrap_servers": bootstrap_list(settings.kafka_bootstrap_servers),
        **security_kwargs(settings),
    }


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """Faust's `broker_credentials`: its aiokafka driver hands them to every consumer,
    producer and topic-creating client (`credentials_to_aiokafka_auth`)."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    assert settings.kafka_sasl_password is not None  # validated by Settings
    # With an ssl_context Faust's SASLCredentials are SASL_SSL, without SASL_PLAINTEXT.
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        ssl_context=context,
        mechanism=settings.kafka_sasl_mechanism,
    )


def _cause(exc: BaseException, settings: Settings, timeout_s: float) -> str:
    """The reason a connection failed, in words an operator can act on."""
    protocol = settings.kafka_security_protocol
    if isinstance(exc, TimeoutError):
        return (
            f"no answer within {timeout_s:g} s (a listener that is not Kafka, or not "
            f"{protocol}? check KAFKA_SECURITY_PROTOCOL)"
        )
    if isinstance(exc, SaslAuthenticationFailed):
        detail = str(exc.args[0]) if exc.args else "rejected"
        return (
            f"SASL authentication failed for user {settings.kafka_sasl_username!r} "
            f"with {settings.kafka_sasl_mechanism}: {detail}"
        )
    if isinstance(exc, UnsupportedSaslMechanismError | IllegalSaslStateError):
        return f"the broker refused SASL mechanism {settings.kafka_sasl_mechanism}: {exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the broker's TLS certificate is not trusted ({exc.verify_message}); "
            "set KAFKA_SSL_CAFILE to the cluster's CA"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or exc}); is it a TLS listener?"
    if isinstance(exc, KafkaConnectionError | ConnectionResetError | BrokenPipeError):
        return (
            f"the broker closed the connection (a listener that is not {protocol}, "
            "or one that wants a client certificate?)"
        )
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens there)"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    if isinstance(exc, KafkaError):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


async def _probe(server: str, kwargs: dict[str, Any], timeout_s: float) -> None:
    host, _, port = server.rpartition(":")
    if not host or not port.isdigit():
        host, port = server, "9092"

    async def connect_and_ask() -> None:
        conn = await create_conn(
            host.strip("[]"), int(port), request_timeout_ms=int(timeout_s * 1000), **kwargs
        )
        try:
            await conn.send(MetadataRequest([]))
        finally:
            conn.close()

    await asyncio.wait_for(connect_and_ask(), timeout_s)


async def check_connection(settings: Settings, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Connect to the bootstrap servers as the clients will and ask for metadata.

    Returns once one server answered; raises `KafkaUnavailable` (one line: the broker,
    the protocol, the cause) when none did within `timeout_s`.
    """
    servers = bootstrap_list(settings.kafka_bootstrap_servers)
    kwargs = security_kwargs(settings)
    pending = {asyncio.ensure_future(_probe(s, kwargs, timeout_s)): s for s in servers}
    failures: dict[str, str] = {}
    try:
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for probe in done:
                server = pending.pop(probe)
                exc = probe.exception()
                if exc is None:
                    return
                failures[server] = _cause(exc, settings, timeout_s)
    finally:
        for probe in pending:
            probe.cancel()
        for probe in pending:
            with contextlib.suppress(BaseException):
                await probe
    raise KafkaUnavailable(
        f"cannot connect to Kafka at {', '.join(servers)} ({settings.kafka_security_protocol}): "
        + "; ".join(f"{s}: {failures[s]}" if len(servers) > 1 else failures[s] for s in servers)
    )


async def partition_bounds(settings: Settings, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """A topic's (first offset, end offset) by partition; ({}, {}) when it does not exist."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings))
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [
        p["partition"] for t in described if t.get("error_code") == 0 for p in t["partitions"]
    ]
    if not partitions:
        return {}, {}
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer = AIOKafkaConsumer(**aiokafka_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        first = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return (
        {tp.partition: off for tp, off in first.items()},
        {tp.partition: off for tp, off in end.items()},
    )


async def acknowledged(futures: list[Awaitable[Any]]) -> list[Any]:
    """Wait until the broker acknowledged every send (their futures), in order, and return
    their results (`RecordMetadata`) in that order; raise the first failure. Most are done
    by the time the loop reaches them, and awaiting a done future does not suspend: cheaper
    than `asyncio.gather`, which adds a callback and a wrapper per future (thousands per
    batch)."""
    return [await future for future in futures]


KEY_HASHES = 16_384
"""Keys whose murmur2 `Murmur2Partitioner` remembers (a key's bytes and an int each)."""


class Murmur2Partitioner:
    """Kafka's default partitioner (aiokafka's `DefaultPartitioner`, Java's murmur2), with
    each key's hash remembered: aiokafka's pure-Python murmur2 was 2.6% of the inventory
    worker's CPU, one hash per output record of mostly the same hot keys. Up to
    ``size`` keys are remembered; then the memory starts again empty."""

    def __init__(self, size: int = KEY_HASHES) -> None:
        self.size = size
        self._hashes: dict[bytes, int] = {}
        self._default = DefaultPartitioner()

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            chosen: int = self._default(key, all_partitions, available)
            return chosen
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self.size:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]
