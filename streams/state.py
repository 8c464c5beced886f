"""The inventory state table: Faust table of `KeyState`, written once per key per batch.

Faust's own `table[key] = value` needs a current stream event and takes the changelog
partition from it. Our writes happen per batch (events of several partitions) and from
timers (flush, expiry), so `StateTable.put` names the partition explicitly: the key's
source partition, which is what recovery hands back to the key's owner.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import faust
from aiokafka.partitioner import murmur2
from faust.serializers import codecs

from models.inventory import KeyState

STATE_CODEC = "invsync-keystate"
KEY_CODEC = "invsync-utf8"


class _KeyStateCodec(codecs.Codec):
    def _dumps(self, s: Any) -> bytes:
        data: bytes = s.to_bytes()
        return data

    def _loads(self, s: bytes) -> Any:
        return KeyState.from_bytes(s)


class _Utf8Codec(codecs.Codec):
    def _dumps(self, s: Any) -> bytes:
        return s.encode("utf-8") if isinstance(s, str) else bytes(s)

    def _loads(self, s: bytes) -> Any:
        return s.decode("utf-8")


codecs.register(STATE_CODEC, _KeyStateCodec())
codecs.register(KEY_CODEC, _Utf8Codec())


def default_partition(key: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as Java and aiokafka producers use it."""
    hashed: int = murmur2(key.encode("utf-8"))
    return (hashed & 0x7FFFFFFF) % partitions


class StateTable:
    """A thin front over a Faust table that knows each key's partition.

    Values are `KeyState` by default; `value_codec="json"` holds plain JSON values.
    """

    def __init__(
        self,
        app: faust.App,
        name: str,
        partitions: int,
        value_codec: str = STATE_CODEC,
        *,
        global_: bool = False,
    ) -> None:
        factory: Any = app.GlobalTable if global_ else app.Table
        table: Any = factory(
            name,
            partitions=partitions,
            help=f"per-key {name} (DESIGN.md 'Inventory semantics')",
        )
        # Faust takes serializers from model types only: set ours, then rebuild the
        # changelog topic (already created on registration) so recovery decodes with them.
        table.key_serializer = KEY_CODEC
        table.value_serializer = value_codec
        table.changelog_topic = table._new_changelog_topic()
        self.table = table
        self.partitions = partitions
        self._partition_of: dict[str, int] = {}

    def get(self, key: str) -> Any:
        return self.table.get(key)

    def put(self, key: str, state: Any, partition: int) -> None:
        """Store and write to the changelog partition of the key's source partition."""
        self.hold(key, state, partition)
        self.table.send_changelog(partition, key, state)

    def hold(self, key: str, state: Any, partition: int) -> None:
        """Store locally only; a `put` of the key must follow before the batch ends."""
        self._partition_of[key] = partition
        self.table.data[key] = state

    def partition_of(self, key: str) -> int:
        known = self._partition_of.get(key)
        if known is not None:
            return known
        recovered = getattr(self.table.data, "_key_partition", {}).get(key)
        if recovered is not None:
            return int(recovered)
        return default_partition(key, self.partitions)

    def items_in(self, partitions: set[int]) -> Iterator[tuple[str, Any, int]]:
        """Keys (with state and partition) that live on the given partitions."""
        for key, state in list(self.table.data.items()):
            partition = self.partition_of(key)
            if partition in partitions:
                yield key, state, partition

    def forget_partitions(self, partitions: set[int]) -> None:
        for key in [k for k, p in self._partition_of.items() if p in partitions]:
            del self._partition_of[key]
