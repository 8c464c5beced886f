"""The local broker's KRaft cluster id (`invsync.localkafka.new_cluster_id`)."""

from __future__ import annotations

import uuid

import pytest

from invsync import localkafka


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xfb... encodes to "-..." in base64url: the storage tool took it for an option.
    ids = iter([uuid.UUID(bytes=b"\xfb" + b"\x01" * 15), uuid.UUID(bytes=b"\x01" * 16)])
    monkeypatch.setattr(localkafka.uuid, "uuid4", lambda: next(ids))
    cluster_id = localkafka.new_cluster_id()
    assert cluster_id == "AQEBAQEBAQEBAQEBAQEBAQ"
    assert not cluster_id.startswith("-")


def test_cluster_ids_are_22_base64url_characters() -> None:
    for _ in range(200):
        cluster_id = localkafka.new_cluster_id()
        assert len(cluster_id) == 22
        assert set(cluster_id) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )
        assert not cluster_id.startswith("-")
