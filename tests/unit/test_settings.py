from __future__ import annotations

import os
import subprocess
import sys

import pytest

from streams.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for name in list(os.environ):
        if name.startswith("INVSYNC_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_match_the_design() -> None:
    s = load_settings()
    assert s.kafka_bootstrap_servers == "localhost:9092"
    assert (s.debounce_ms, s.max_delay_ms) == (500, 5000)
    assert s.safety_stock == 0
    assert s.reservation_ttl_s == 86_400
    assert s.web_port == 6066
    assert s.app_id == "invsync"
    assert s.marketplace_inventory_url is None
    assert s.topic_stock_events == "warehouse.stock-events"
    assert s.topic_inventory == "marketplace.inventory"
    assert s.topic_shipments == "marketplace.shipments"
    assert s.topic_dead_letters == "invsync.dead-letters"


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("INVSYNC_DEBOUNCE_MS", "0")
    monkeypatch.setenv("INVSYNC_CALLBACK_HEADERS", '{"x-token": "s3cret"}')
    monkeypatch.setenv("INVSYNC_SAFETY_STOCK_OVERRIDES", '{"WH1": 2, "WH1:SKU": 5}')
    s = load_settings()
    assert s.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert s.debounce_ms == 0
    assert s.callback_headers["x-token"].get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)
    assert s.safety_stock_overrides == {"WH1": 2, "WH1:SKU": 5}


@pytest.mark.parametrize(
    ("var", "value", "named"),
    [
        ("INVSYNC_DEBOUNCE_MS", "soon", "INVSYNC_DEBOUNCE_MS"),
        ("INVSYNC_WEB_PORT", "70000", "INVSYNC_WEB_PORT"),
        ("INVSYNC_CALLBACK_HEADERS", "not json", "INVSYNC_CALLBACK_HEADERS"),
        ("INVSYNC_TOPIC_INVENTORY", "bad topic!", "INVSYNC_TOPIC_INVENTORY"),
        ("INVSYNC_MAX_DELAY_MS", "10", "INVSYNC_MAX_DELAY_MS"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, named: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert named in message
    assert "\n" not in message


def test_secret_values_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVSYNC_CALLBACK_HEADERS", '["hunter2-token"]')
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "hunter2" not in str(info.value)


def test_worker_stops_with_one_clear_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"PATH": "/usr/bin:/bin", "INVSYNC_DEBOUNCE_MS": "-5"}
    done = subprocess.run(
        [sys.executable, "-m", "invsync.cli", "worker"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "INVSYNC_DEBOUNCE_MS" in lines[0]
