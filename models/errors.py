"""The root of invsync's errors, and the error of input that can never be applied.

```
InvsyncError                  root of every error invsync raises on purpose
 ├── DecodeError              bad input: dead-lettered with `reason` (a metric label)
 ├── ConnectorError           an HTTP call failed (connectors/errors.py: TransportError,
 │                            IncreffError, MarketplaceError)
 ├── CallbackError            a callback answered with an error (models/callbacks.py)
 └── SettingsError            a setting is missing or invalid (streams/settings.py)
```

Each family lives beside the code that raises it; all inherit `InvsyncError`, so a caller
can tell invsync's own failures from a bug with one `except`.
"""

from __future__ import annotations

from typing import Literal

DecodeReason = Literal[
    "invalid_json",  # not JSON at all
    "schema",  # JSON, but not the contract's shape
    "key_mismatch",  # the Kafka key does not name what the value names (or is missing)
    "wrong_partition",  # not where Kafka's default partitioner puts the key
    "out_of_range",  # a number beyond the contract's bounds
    "unapplicable",  # valid, but the rules cannot apply it (see the message)
]


class InvsyncError(Exception):
    """Root of invsync's own errors."""


class DecodeError(InvsyncError, ValueError):
    """A message that can never be applied.

    `reason` is one of a small fixed set (the dead-letter metric's label, and what a
    program reading dead letters can switch on); `str(exc)` is the human detail.
    """

    def __init__(self, message: str, *, reason: DecodeReason = "schema") -> None:
        super().__init__(message)
        self.reason: DecodeReason = reason
