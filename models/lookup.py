"""The pre-order inventory lookup, the pure part (DESIGN.md path table: `POST
/inventories/search-sku`, Increff's search shape answered from invsync's own state).

A key's state lives on the worker owning its partition, and one SKU's locations are
spread over partitions, so every worker answers for the partitions it has restored
(`InventoryEngine.lookup`, the very ATP it publishes from) and the worker the request
reached merges those answers. It answers only when they cover every partition exactly
once, all from one consumer-group generation: never a silently partial answer.

`SkuIndex` finds a SKU's keys without scanning every key. A location code and a SKU may
both contain ``:``, so a key ``a:b:c`` may hold SKU ``b:c`` or ``c``: it is indexed under
both, and the lookup keeps the keys whose state names the location that splits them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.callbacks import parse_body
from models.errors import InvsyncError
from models.increff import Code, SearchInventoryRequest

MAX_LOOKUP_SKUS = 1000
"""SKUs one lookup may name; more is refused as a whole (400)."""

Found = dict[str, list[tuple[str, int]]]
"""SKU → [(locationCode, ATP)] of the keys one worker holds."""


class LookupRequest(SearchInventoryRequest):
    """Increff's search body, at most `MAX_LOOKUP_SKUS` codes."""

    channelSkuCodes: list[Code] = Field(min_length=1, max_length=MAX_LOOKUP_SKUS)


class PeerLookupRequest(BaseModel):
    """One worker asking another for the SKUs' keys on the partitions it restored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    channelSkuCodes: list[Code] = Field(min_length=1, max_length=MAX_LOOKUP_SKUS)
    generation: int
    """The consumer-group generation the asking worker answers from."""


class PeerLookupAnswer(BaseModel):
    """What a worker holds: its restored partitions and, per SKU found, (location, ATP)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    generation: int
    partitions: list[int]
    found: dict[str, list[tuple[str, int]]]


class LookupIncomplete(InvsyncError):
    """Some partition was not answered (a worker unreachable, rebalancing, or answering
    from another generation): the lookup answers 503, never a partial list."""


def parse_lookup(body: bytes) -> list[str]:
    """The SKU codes of a search body, each once, in their first order; `BadRequest`."""
    request = parse_body(LookupRequest, body)
    return list(dict.fromkeys(request.channelSkuCodes))


def parse_peer_lookup(body: bytes) -> PeerLookupRequest:
    return parse_body(PeerLookupRequest, body)


@dataclass(frozen=True)
class PartialLookup:
    """One worker's answer: ``found`` over exactly ``partitions``, in ``generation``."""

    generation: int
    partitions: frozenset[int]
    found: Found
    source: str = ""
    """Who answered (a worker's URL), for error messages."""

    def to_wire(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "partitions": sorted(self.partitions),
            "found": self.found,
        }

    @classmethod
    def from_wire(cls, answer: PeerLookupAnswer, source: str) -> PartialLookup:
        found = {sku: [(loc, qty) for loc, qty in rows] for sku, rows in answer.found.items()}
        return cls(answer.generation, frozenset(answer.partitions), found, source)


def merge(skus: Sequence[str], parts: Sequence[PartialLookup], partitions: int) -> dict[str, Any]:
    """The search answer, if ``parts`` cover partitions ``0..partitions-1`` exactly once,
    all in one generation; else `LookupIncomplete` naming what is missing.

    A SKU with no key anywhere goes to ``failureList``; one with keys, whatever their
    ATP, to ``successList`` with every location (sorted by code) and their sum.
    """
    generations = sorted({p.generation for p in parts})
    if len(generations) > 1:
        raise LookupIncomplete(
            "lookup incomplete: workers answered from different group generations "
            f"{generations} (rebalancing); retry"
        )
    seen: dict[int, str] = {}
    for part in parts:
        for partition in part.partitions:
            if partition in seen:
                raise LookupIncomplete(
                    f"lookup incomplete: partition {partition} answered by both "
                    f"{seen[partition] or 'this worker'} and {part.source or 'this worker'}"
                )
            seen[partition] = part.source
    missing = sorted(set(range(partitions)) - set(seen))
    if missing:
        raise LookupIncomplete(
            f"lookup incomplete: no answer for partition(s) {_listed(missing)}; retry"
        )
    rows: dict[str, list[tuple[str, int]]] = {}
    for part in parts:
        for sku, found in part.found.items():
            rows.setdefault(sku, []).extend(found)
    return answer(skus, rows)


def answer(skus: Sequence[str], rows: Mapping[str, list[tuple[str, int]]]) -> dict[str, Any]:
    """Increff's search response (`SearchInventoryResponse`'s wire form) for ``skus``."""
    success: list[dict[str, Any]] = []
    failure: list[str] = []
    for sku in skus:
        found = rows.get(sku)
        if not found:
            failure.append(sku)
            continue
        found = sorted(found)
        success.append(
            {
                "channelSkuCode": sku,
                "totalQuantity": sum(qty for _, qty in found),
                "inventories": [{"quantity": q, "locationCode": loc} for loc, q in found],
            }
        )
    return {"successList": success, "failureList": failure}


def _listed(values: Sequence[int], limit: int = 20) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


@dataclass
class SkuIndex:
    """Inventory keys by every SKU they may hold (see the module docstring).

    A key without ``:`` holds no SKU and is not indexed. Adding a key twice, or
    discarding one never added, is harmless.
    """

    _keys: dict[str, set[str]] = field(default_factory=dict)

    def add(self, key: str) -> None:
        start = key.find(":")
        while start >= 0:
            sku = key[start + 1 :]
            held = self._keys.get(sku)
            if held is None:
                self._keys[sku] = {key}
            else:
                held.add(key)
            start = key.find(":", start + 1)

    def discard(self, key: str) -> None:
        start = key.find(":")
        while start >= 0:
            sku = key[start + 1 :]
            held = self._keys.get(sku)
            if held is not None:
                held.discard(key)
                if not held:
                    del self._keys[sku]
            start = key.find(":", start + 1)

    def candidates(self, sku: str) -> Iterator[str]:
        """Every indexed key ending in ``:{sku}`` (some may split elsewhere)."""
        yield from tuple(self._keys.get(sku, ()))

    def clear(self) -> None:
        self._keys.clear()

    def rebuild(self, keys: Iterable[str]) -> None:
        self.clear()
        for key in keys:
            self.add(key)

    def __len__(self) -> int:
        """SKUs indexed (every suffix counted)."""
        return len(self._keys)


_ABSENT = object()


class IndexedDict(dict[str, Any]):
    """A dict keeping a `SkuIndex` of its keys, whichever method sets or removes them."""

    def __init__(self, index: SkuIndex | None = None) -> None:
        super().__init__()
        self.index = index if index is not None else SkuIndex()

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self:
            self.index.add(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.index.discard(key)

    def pop(self, key: str, *default: Any) -> Any:
        value = super().pop(key, _ABSENT)
        if value is _ABSENT:
            if default:
                return default[0]
            raise KeyError(key)
        self.index.discard(key)
        return value

    def popitem(self) -> tuple[str, Any]:
        key, value = super().popitem()
        self.index.discard(key)
        return key, value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        if hasattr(other, "keys"):
            for key in other.keys():  # noqa: SIM118 - dict.update's own protocol
                self[key] = other[key]
        else:
            for key, value in other:
                self[key] = value
        for key, value in kwargs.items():
            self[key] = value

    def __ior__(self, other: Any) -> IndexedDict:  # type: ignore[override,misc]
        self.update(other)
        return self

    def clear(self) -> None:
        super().clear()
        self.index.clear()
