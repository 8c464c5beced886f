"""Every topic the worker uses, changelogs included, is created before Faust starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.app import create_app
from streams.settings import Settings
from streams.topics import COMPACTED, topic_specs


@pytest.mark.parametrize("consolidated", [False, True])
def test_every_topic_and_changelog_is_created_up_front(tmp_path: Path, consolidated: bool) -> None:
    settings = Settings(
        data_dir=tmp_path,
        callback_auth="none",
        app_id=f"t-topics-{consolidated}",
        marketplace_inventory_url="http://127.0.0.1:9/inventory",  # the push table too
        consolidated=consolidated,
    )
    runtime = create_app(settings)
    changelogs = {t.changelog_topic.get_topic_name() for t in runtime.app.tables.values()}
    specs = {s.name: s for s in topic_specs(settings)}
    assert changelogs <= set(specs), changelogs - set(specs)
    for name in changelogs:
        assert specs[name].configs == COMPACTED
        assert specs[name].partitions == settings.topic_partitions
    sources = {t for agent in runtime.app.agents.values() for t in agent.channel.topics}
    assert sources <= set(specs), sources - set(specs)
    consolidation = {settings.topic_inventory_by_sku, settings.topic_inventory_consolidated}
    assert (consolidation <= set(specs)) is consolidated
    assert not consolidation & set(specs) or consolidated
    assert (runtime.consolidation is not None) is consolidated
    if consolidated:
        assert specs[settings.topic_inventory_consolidated].configs == COMPACTED
        assert specs[settings.topic_inventory_by_sku].configs == {}  # every location's record
