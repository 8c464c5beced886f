"""Secured listeners for the local broker: SASL_SSL (SCRAM and PLAIN) and SSL (mutual TLS).

They sit beside the PLAINTEXT listener (which the broker keeps for itself and for
`kafka status`), so a client can be tried against what a managed cluster asks for.
The certificates are the caller's (tests make a throw-away CA). SCRAM users are
written into the KRaft metadata when the storage is formatted, as salted passwords
computed here, so no password appears on a command line; PLAIN users live in the
broker's properties file, readable by its owner only.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from models.errors import InvsyncError

SCRAM_ITERATIONS = 8192
_SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MECHANISMS = ("PLAIN", *_SCRAM_HASHES)


class SecurityConfigError(InvsyncError, ValueError):
    """The secured listeners cannot be set up as asked."""


@dataclass(frozen=True)
class Security:
    """Extra listeners and what they need.

    `certfile`: the broker's certificate (chain), PEM, valid for 127.0.0.1.
    `keyfile`: its private key, PEM PKCS#8 unencrypted ("BEGIN PRIVATE KEY").
    `cafile`: the CA that signs client certificates on the SSL listener.
    `users`: name -> password, accepted by SCRAM-SHA-256/512 and PLAIN on SASL_SSL.
    """

    certfile: Path
    keyfile: Path
    sasl_ssl_port: int | None = None
    ssl_port: int | None = None
    cafile: Path | None = None
    users: Mapping[str, str] = field(default_factory=dict, repr=False)

    def check(self) -> None:
        if self.sasl_ssl_port is None and self.ssl_port is None:
            raise SecurityConfigError("no secured listener asked for (SASL_SSL or SSL port)")
        for name, path in (("certificate", self.certfile), ("key", self.keyfile)):
            if not path.is_file():
                raise SecurityConfigError(f"the broker's TLS {name} {path} does not exist")
        if "BEGIN PRIVATE KEY" not in self.keyfile.read_text(errors="replace"):
            raise SecurityConfigError(
                f"{self.keyfile} is not an unencrypted PKCS#8 key (BEGIN PRIVATE KEY); "
                "convert it with `openssl pkcs8 -topk8 -nocrypt`"
            )
        if self.ssl_port is not None and (self.cafile is None or not self.cafile.is_file()):
            raise SecurityConfigError("the SSL listener needs the CA of client certificates")
        if self.sasl_ssl_port is not None and not self.users:
            raise SecurityConfigError("the SASL_SSL listener needs at least one user")
        for name in self.users:
            if not name or any(c in name for c in '=,"[] \t\n\\'):
                raise SecurityConfigError(f"unusable SASL user name {name!r}")
        if any(c in p for p in self.users.values() for c in '"\\\n\r'):
            # They would need escaping twice (JAAS inside a properties file).
            raise SecurityConfigError(
                "a SASL password may not hold quotes, backslashes or newlines"
            )

    def listeners(self) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        if self.sasl_ssl_port is not None:
            out.append(("SASL_SSL", self.sasl_ssl_port))
        if self.ssl_port is not None:
            out.append(("SSL", self.ssl_port))
        return out

    def properties(self, data_dir: Path) -> list[str]:
        """Broker properties of the secured listeners (listener names are the protocols)."""
        keystore = data_dir / "tls" / "broker-keystore.pem"
        keystore.parent.mkdir(parents=True, exist_ok=True)
        keystore.write_text(self.keyfile.read_text() + "\n" + self.certfile.read_text())
        keystore.chmod(0o600)
        lines: list[str] = []
        for listener, _port in self.listeners():
            prefix = f"listener.name.{listener.lower()}"
            lines += [
                f"{prefix}.ssl.keystore.type=PEM",
                f"{prefix}.ssl.keystore.location={keystore}",
            ]
        if self.ssl_port is not None:
            assert self.cafile is not None  # check() ran
            lines += [
                "listener.name.ssl.ssl.client.auth=required",
                "listener.name.ssl.ssl.truststore.type=PEM",
                f"listener.name.ssl.ssl.truststore.location={self.cafile.resolve()}",
            ]
        if self.sasl_ssl_port is not None:
            plain_users = " ".join(f'user_{n}="{p}"' for n, p in self.users.items())
            lines += [
                f"listener.name.sasl_ssl.sasl.enabled.mechanisms={','.join(MECHANISMS)}",
                "listener.name.sasl_ssl.plain.sasl.jaas.config="
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};",
            ]
            for mech in _SCRAM_HASHES:
                lines.append(
                    f"listener.name.sasl_ssl.{mech.lower()}.sasl.jaas.config="
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                )
        return lines

    def scram_format_args(self) -> list[str]:
        """`kafka-storage format` arguments creating the SCRAM users (salted, not plain)."""
        args: list[str] = []
        for name, password in self.users.items():
            for mech, digest in _SCRAM_HASHES.items():
                salt = secrets.token_bytes(16)
                salted = hashlib.pbkdf2_hmac(digest, password.encode(), salt, SCRAM_ITERATIONS)
                args += [
                    "--add-scram",
                    f"{mech}=[name={name},iterations={SCRAM_ITERATIONS},"
                    f'salt="{base64.b64encode(salt).decode()}",'
                    f'saltedpassword="{base64.b64encode(salted).decode()}"]',
                ]
        return args
