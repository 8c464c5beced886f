"""Our exception tree. The retry loop reads `retriable` / `retry_after`, never types.

```
InvsyncError                 the root (models/errors.py)
 └── ConnectorError          an HTTP call failed: retriable, retry_after, status, endpoint
      ├── TransportError     no HTTP answer: connect, read, write, timeout (retriable)
      ├── IncreffError       Increff answered non-2xx (or garbage): code, message, description
      ├── MarketplaceError   the marketplace answered non-2xx (or garbage)
      └── PeerError          another invsync worker answered non-2xx (or garbage)
```

Messages are built from Increff's / the marketplace's own words and our endpoint
names only; the clients scrub their credentials from any text that reaches here,
so `str()` / `repr()` of these errors are safe to log.
"""

from __future__ import annotations

from models.errors import InvsyncError

__all__ = [
    "ConnectorError",
    "IncreffError",
    "InvsyncError",
    "MarketplaceError",
    "PeerError",
    "TransportError",
]


class ConnectorError(InvsyncError):
    """A call to an outside HTTP service failed.

    `retriable`: the same request may succeed later (network, 5xx, 429).
    `retry_after`: seconds the server asked us to wait, if it said.
    `status`: the HTTP status, `None` when no response arrived.
    """

    def __init__(
        self,
        message: str,
        *,
        retriable: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retriable = retriable
        self.retry_after = retry_after
        self.status = status
        self.endpoint = endpoint

    def __str__(self) -> str:
        where = f"{self.endpoint}: " if self.endpoint else ""
        status = f"HTTP {self.status}: " if self.status is not None else ""
        return f"{where}{status}{self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, endpoint={self.endpoint!r}, "
            f"status={self.status!r}, retriable={self.retriable!r}, "
            f"retry_after={self.retry_after!r})"
        )


class TransportError(ConnectorError):
    """No HTTP response: the network failed or timed out. Retriable unless told otherwise."""

    def __init__(
        self,
        message: str,
        *,
        retriable: bool = True,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message, retriable=retriable, endpoint=endpoint)


class IncreffError(ConnectorError):
    """Increff refused or failed a call; `code` / `message` / `description` are Increff's."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        description: str | None = None,
        retriable: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(
            message,
            retriable=retriable,
            retry_after=retry_after,
            status=status,
            endpoint=endpoint,
        )
        self.code = code
        self.description = description

    def __str__(self) -> str:
        code = f"{self.code}: " if self.code else ""
        desc = f" ({self.description})" if self.description else ""
        where = f"{self.endpoint}: " if self.endpoint else ""
        status = f"HTTP {self.status}: " if self.status is not None else ""
        return f"{where}{status}{code}{self.message}{desc}"

    def __repr__(self) -> str:
        return (
            f"IncreffError({self.message!r}, code={self.code!r}, "
            f"description={self.description!r}, endpoint={self.endpoint!r}, "
            f"status={self.status!r}, retriable={self.retriable!r}, "
            f"retry_after={self.retry_after!r})"
        )


class MarketplaceError(ConnectorError):
    """The marketplace refused or failed a call."""


class PeerError(ConnectorError):
    """Another worker of the group refused or failed a lookup (e.g. 503: rebalancing)."""
