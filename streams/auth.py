"""The header check of every request Increff or the marketplace sends the worker.

`INVSYNC_CALLBACK_HEADERS` lists accepted header sets; a request passes when it carries
every header of one set (several sets let credentials rotate without downtime). No set
configured means open (`INVSYNC_CALLBACK_AUTH=none`; settings refuse it otherwise).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence

from pydantic import SecretStr


class HeaderAuth:
    """Checks headers against the accepted sets, in time that says nothing of which failed."""

    def __init__(self, accepted: Sequence[Mapping[str, SecretStr]]) -> None:
        # Header names are case-insensitive in HTTP; values are compared exactly.
        self._accepted = [
            [
                (name.lower(), secret.get_secret_value().encode("utf-8"))
                for name, secret in header_set.items()
            ]
            for header_set in accepted
        ]
        self._first = (
            {name: secret.get_secret_value() for name, secret in accepted[0].items()}
            if accepted
            else {}
        )

    def credentials(self) -> dict[str, str]:
        """The first accepted set, for a worker calling another worker ({} when open)."""
        return dict(self._first)

    def __call__(self, headers: Mapping[str, str]) -> bool:
        if not self._accepted:
            return True
        # Header bytes that are not UTF-8 arrive surrogate-escaped: compare them as sent.
        given = {
            name.lower(): value.encode("utf-8", "surrogateescape")
            for name, value in headers.items()
        }
        ok = False
        for accepted in self._accepted:
            matches = True
            for name, expected in accepted:
                value = given.get(name)
                # Compare every header of every set, present or not, so timing says
                # nothing about which one failed.
                same = hmac.compare_digest(value or b"", expected)
                matches = matches and value is not None and same
            ok = ok or matches
        return ok
