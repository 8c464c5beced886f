"""Settings: every variable of DESIGN.md "Running it", validated once at start.

One frozen object; secrets are `SecretStr` so they never print. Bad values stop the
worker with one line naming every bad variable at once (`SettingsError`), never
echoing a secret's value.
"""

from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from models.errors import InvsyncError

_SECRET_VARS = {
    "INVSYNC_INCREFF_PASSWORD",
    "INVSYNC_CALLBACK_HEADERS",
    "INVSYNC_MARKETPLACE_HEADERS",
    "KAFKA_SASL_PASSWORD",
}
"""Variables whose value is never shown; any field holding a `SecretStr` is treated so too."""

HeaderSet = dict[str, SecretStr]

TopicName = Annotated[str, Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")]


class SettingsError(InvsyncError, ValueError):
    """A setting is missing or invalid; the message names the variable."""


class Settings(BaseSettings):
    """The worker's configuration (environment variables, or a `.env` file)."""

    model_config = SettingsConfigDict(
        env_prefix="INVSYNC_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    kafka_bootstrap_servers: str = Field(
        "localhost:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS"),
        min_length=1,
    )
    # Kafka security (streams/kafka.py maps these for every client, Faust's and ours).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias=AliasChoices("KAFKA_SECURITY_PROTOCOL")
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, validation_alias=AliasChoices("KAFKA_SASL_MECHANISM")
    )
    kafka_sasl_username: str | None = Field(
        None, validation_alias=AliasChoices("KAFKA_SASL_USERNAME"), min_length=1
    )
    kafka_sasl_password: SecretStr | None = Field(
        None, validation_alias=AliasChoices("KAFKA_SASL_PASSWORD")
    )
    kafka_ssl_cafile: FilePath | None = Field(
        None, validation_alias=AliasChoices("KAFKA_SSL_CAFILE")
    )
    kafka_ssl_certfile: FilePath | None = Field(
        None, validation_alias=AliasChoices("KAFKA_SSL_CERTFILE")
    )
    kafka_ssl_keyfile: FilePath | None = Field(
        None, validation_alias=AliasChoices("KAFKA_SSL_KEYFILE")
    )
    debounce_ms: int = Field(500, ge=0, le=3_600_000)
    max_delay_ms: int = Field(5000, ge=0, le=3_600_000)
    safety_stock: int = Field(0, ge=0)
    safety_stock_overrides: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)
    reservation_ttl_s: int = Field(86_400, gt=0)
    # An AVAILABLE SNAPSHOT absorbs reservations Increff accepted this long before it
    # (Increff reserves asynchronously after answering 200).
    settle_grace_s: float = Field(0.0, ge=0)

    increff_base_url: str | None = None
    increff_username: str | None = None
    increff_password: SecretStr | None = None
    increff_domain: str | None = None
    increff_timeout_s: float = Field(10.0, gt=0)
    # Order router (DESIGN.md "Orders and callbacks"): events of different orders in
    # flight at once; the in-line retry before an order is parked; how long a parked
    # order is retried before it is dead-lettered; the wait for the broker's ack.
    order_concurrency: int = Field(64, ge=1, le=10_000)
    order_inline_retry_s: float = Field(2.0, ge=0, le=60)
    order_retry_limit_s: float = Field(21_600.0, gt=0)
    order_send_timeout_s: float = Field(10.0, gt=0, le=300)

    marketplace_inventory_url: str | None = None
    marketplace_headers: Annotated[dict[str, SecretStr], NoDecode] = Field(default_factory=dict)
    marketplace_timeout_s: float = Field(10.0, gt=0, le=300)
    # Accepted header sets: a request passes when it carries every header of one set
    # (several sets let credentials rotate without downtime).
    callback_headers: Annotated[tuple[HeaderSet, ...], NoDecode] = ()
    callback_auth: Literal["headers", "none"] = "headers"
    callback_max_bytes: int = Field(1_048_576, gt=0)
    # A request head must arrive within this of the connection (or of the previous
    # answer on a kept-alive one); a body within `callback_body_timeout_s`.
    callback_header_timeout_s: float = Field(10.0, gt=0, le=3600)
    callback_body_timeout_s: float = Field(30.0, gt=0, le=3600)
    # Retention of the callbacks' global tables (streams/shipments.py).
    shipment_retention_s: float = Field(2_592_000.0, gt=0)
    callback_result_retention_s: float = Field(604_800.0, gt=0)

    web_port: int = Field(6066, ge=1, le=65535)
    web_host: str = "0.0.0.0"  # noqa: S104 - Increff must reach the callbacks
    # How the other workers of the group reach this one (the lookup gathers from them);
    # unset: http://{INVSYNC_WEB_HOST, or this host's name when that binds every
    # address}:{INVSYNC_WEB_PORT}. Faust advertises it in the group's assignment.
    web_url: str | None = Field(None, pattern=r"^https?://[^\s/?#]+/?$")
    lookup_peer_timeout_s: float = Field(2.0, gt=0, le=60)
    data_dir: Path = Path("./.invsync")
    app_id: str = Field("invsync", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    topic_partitions: int = Field(4, ge=1, le=1024)
    topic_replication: int = Field(1, ge=1, le=16)
    fast_path: bool = True
    # How often the consumer commits offsets while input flows (and every 10,000 acks);
    # the fast path also commits within `CATCH_UP_COMMIT_S` of catching up.
    commit_interval_ms: int = Field(1000, ge=10, le=600_000)
    # Also publish each SKU's ATP over all its locations (streams/consolidation.py).
    consolidated: bool = False
    # Where the inventory table keeps its states: `rocksdb` (under data_dir, reopened at a
    # restart: only the changelog's tail is read) or `memory` (the whole changelog is).
    state_store: Literal["rocksdb", "memory"] = "rocksdb"
    # The worker's event loop: uvloop does the loop's own work in C (README "Performance").
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    log_level: str = Field("info", pattern=r"^(?i:debug|info|warning|error)$")
    log_format: str = Field("text", pattern=r"^(?i:text|json)$")  # json: one object a line

    topic_stock_events: TopicName = "warehouse.stock-events"
    topic_orders: TopicName = "marketplace.orders"
    topic_shipments: TopicName = "marketplace.shipments"
    topic_inventory: TopicName = "marketplace.inventory"
    topic_inventory_consolidated: TopicName = "marketplace.inventory-consolidated"
    topic_order_updates: TopicName = "marketplace.order-updates"
    topic_dead_letters: TopicName = "invsync.dead-letters"

    @field_validator("callback_headers", mode="before")
    @classmethod
    def _header_sets(cls, value: Any) -> Any:
        """A JSON object (one set) or a JSON list of objects; `{}` / empty means none."""
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else []
            except json.JSONDecodeError:
                raise ValueError("must be a JSON object or a list of JSON objects") from None
        if isinstance(value, dict):
            value = [value] if value else []
        if not isinstance(value, list | tuple) or not all(isinstance(v, dict) and v for v in value):
            raise ValueError("must be a JSON object or a list of non-empty JSON objects")
        return value

    @field_validator("web_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("marketplace_headers", "safety_stock_overrides", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except json.JSONDecodeError:
                raise ValueError("must be a JSON object") from None
            if not isinstance(value, dict):
                raise ValueError("must be a JSON object")  # noqa: TRY004 - pydantic wants ValueError
        return value

    @field_validator(
        "kafka_security_protocol",
        "kafka_sasl_mechanism",
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        mode="before",
    )
    @classmethod
    def _kafka_blank_is_unset(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return "PLAINTEXT" if info.field_name == "kafka_security_protocol" else None
            if info.field_name in ("kafka_security_protocol", "kafka_sasl_mechanism"):
                return value.upper()
        return value

    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        protocol = self.kafka_security_protocol
        sasl = {
            "KAFKA_SASL_MECHANISM": self.kafka_sasl_mechanism,
            "KAFKA_SASL_USERNAME": self.kafka_sasl_username,
            "KAFKA_SASL_PASSWORD": self.kafka_sasl_password,
        }
        tls = {
            "KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
            "KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
            "KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile,
        }
        if protocol.startswith("SASL_"):
            missing = [name for name, value in sasl.items() if value is None]
            if missing:
                raise ValueError(f"KAFKA_SECURITY_PROTOCOL {protocol} needs {', '.join(missing)}")
        elif given := [name for name, value in sasl.items() if value is not None]:
            raise ValueError(
                f"{', '.join(given)} set but KAFKA_SECURITY_PROTOCOL is {protocol} "
                "(SASL_SSL or SASL_PLAINTEXT use them)"
            )
        if protocol in ("PLAINTEXT", "SASL_PLAINTEXT") and (
            given := [name for name, value in tls.items() if value is not None]
        ):
            raise ValueError(
                f"{', '.join(given)} set but KAFKA_SECURITY_PROTOCOL is {protocol} "
                "(SSL or SASL_SSL use them)"
            )
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            raise ValueError("KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE (the client certificate)")
        if protocol in ("SSL", "SASL_SSL"):
            from streams.kafka import tls_context  # lazy: light unless TLS is on

            try:
                tls_context(self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
            except (ssl.SSLError, OSError) as exc:
                which = "KAFKA_SSL_CERTFILE/KAFKA_SSL_KEYFILE"
                try:
                    tls_context(self.kafka_ssl_cafile)
                except (ssl.SSLError, OSError):
                    which = "KAFKA_SSL_CAFILE"
                reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
                raise ValueError(f"{which} cannot be loaded ({reason})") from None
        return self

    @model_validator(mode="after")
    def _windows(self) -> Settings:
        problems = []
        if self.max_delay_ms < self.debounce_ms:
            problems.append("INVSYNC_MAX_DELAY_MS must be >= INVSYNC_DEBOUNCE_MS")
        if self.increff_base_url and not (self.increff_username and self.increff_password):
            problems.append(
                "INVSYNC_INCREFF_USERNAME and INVSYNC_INCREFF_PASSWORD are required "
                "when INVSYNC_INCREFF_BASE_URL is set"
            )
        consolidated = self.topic_inventory_consolidated
        if consolidated in self._topics_besides_consolidated():
            problems.append(
                f"INVSYNC_TOPIC_INVENTORY_CONSOLIDATED ({consolidated!r}) must be a topic of "
                "its own: another setting names it too"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _topics_besides_consolidated(self) -> set[str]:
        return {
            self.topic_stock_events,
            self.topic_orders,
            self.topic_shipments,
            self.topic_inventory,
            self.topic_order_updates,
            self.topic_dead_letters,
            self.topic_commands,
            self.topic_inventory_by_sku,
        }

    @property
    def advertised_url(self) -> str:
        """This worker's URL for the others (`INVSYNC_WEB_URL`, or derived)."""
        if self.web_url:
            return self.web_url.rstrip("/")
        host = self.web_host
        if host in ("", "0.0.0.0", "::"):  # noqa: S104 - a bind-all address, not a bind
            host = socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.web_port}"

    @property
    def topic_commands(self) -> str:
        """Internal topic of reserve/release commands, co-partitioned with stock events."""
        return f"{self.app_id}-inventory-commands"

    @property
    def topic_inventory_by_sku(self) -> str:
        """Internal topic of `marketplace.inventory`'s records keyed by channelSkuCode
        (with `INVSYNC_CONSOLIDATED`)."""
        return f"{self.app_id}-inventory-by-sku"


def _env_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return f"INVSYNC_{field.upper()}"


def _is_secret(field: str) -> bool:
    info = Settings.model_fields.get(field)
    return _env_name(field) in _SECRET_VARS or (
        info is not None and "SecretStr" in repr(info.annotation)
    )


def _describe(error: Any) -> str:
    """`VAR: message (got 'value')`; the value only when short and not a secret."""
    loc = error.get("loc") or ()
    field = str(loc[0]) if loc else ""
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if not field:
        return message  # a cross-field rule: its message names the variables
    if not _is_secret(field) and "input" in error:
        shown = repr(error["input"])
        if len(shown) < 80:
            message = f"{message} (got {shown})"
    return f"{_env_name(field)}: {message}"


def load_settings(**overrides: Any) -> Settings:
    """Build `Settings`; every bad variable is named in one line, secrets never shown."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = list(dict.fromkeys(_describe(e) for e in exc.errors()))
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
    except SourceError as exc:
        # pydantic-settings could not decode a variable (its message names the field,
        # never the value).
        raise SettingsError(f"invalid settings: {exc}") from None


def require_callback_auth(settings: Settings) -> bool:
    """Whether callbacks are checked; raises when no header set is configured and
    `INVSYNC_CALLBACK_AUTH=none` does not say callbacks may run open."""
    if settings.callback_headers:
        return True
    if settings.callback_auth == "none":
        return False
    raise SettingsError(
        "invalid settings: INVSYNC_CALLBACK_HEADERS is required (the headers Increff's "
        "callbacks must carry); set INVSYNC_CALLBACK_AUTH=none to serve them without auth"
    )
