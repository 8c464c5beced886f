"""Every topic the worker uses, changelogs included, is created before Faust starts."""

from __future__ import annotations

from pathlib import Path

from streams.app import create_app
from streams.settings import Settings
from streams.topics import COMPACTED, topic_specs


def test_every_table_changelog_is_created_up_front_and_compacted(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        callback_auth="none",
        app_id="t-topics",
        marketplace_inventory_url="http://127.0.0.1:9/inventory",  # the push table too
    )
    runtime = create_app(settings)
    changelogs = {t.changelog_topic.get_topic_name() for t in runtime.app.tables.values()}
    specs = {s.name: s for s in topic_specs(settings)}
    assert changelogs <= set(specs), changelogs - set(specs)
    for name in changelogs:
        assert specs[name].configs == COMPACTED
        assert specs[name].partitions == settings.topic_partitions
