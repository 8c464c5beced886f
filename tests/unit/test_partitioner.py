"""The producer's partitioner: Kafka's default (murmur2), with hashes remembered."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.app import faust_config
from streams.kafka import Murmur2Partitioner
from streams.settings import Settings


@settings(max_examples=300, deadline=None)
@given(
    keys=st.lists(st.binary(min_size=0, max_size=40), min_size=1, max_size=40),
    partitions=st.integers(1, 64),
    size=st.integers(1, 8),
)
def test_every_key_goes_where_kafkas_default_partitioner_puts_it(
    keys: list[bytes], partitions: int, size: int
) -> None:
    """Also across the memory filling and starting again (``size`` small), and for the
    same key asked again with another partition count."""
    ours = Murmur2Partitioner(size=size)
    all_partitions = list(range(partitions))
    for key in [*keys, *keys]:
        expected = DefaultPartitioner()(key, all_partitions, all_partitions)
        assert ours(key, all_partitions, all_partitions) == expected
        fewer = all_partitions[: max(1, partitions // 2)]
        assert ours(key, fewer, fewer) == DefaultPartitioner()(key, fewer, fewer)
    assert len(ours._hashes) <= size


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    ours = Murmur2Partitioner()
    assert all(ours(None, [0, 1, 2, 3], [2]) == 2 for _ in range(20))


def test_the_workers_producer_uses_it() -> None:
    assert isinstance(faust_config(Settings())["producer_partitioner"], Murmur2Partitioner)
