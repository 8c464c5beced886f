from __future__ import annotations

import os
import subprocess
import sys

import pytest

from streams.settings import SettingsError, load_settings, require_callback_auth


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
    assert s.consolidated is False
    assert s.topic_inventory_consolidated == "marketplace.inventory-consolidated"
    assert s.topic_inventory_by_sku == "invsync-inventory-by-sku"


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("INVSYNC_DEBOUNCE_MS", "0")
    monkeypatch.setenv("INVSYNC_CALLBACK_HEADERS", '{"x-token": "s3cret"}')
    monkeypatch.setenv("INVSYNC_SAFETY_STOCK_OVERRIDES", '{"WH1": 2, "WH1:SKU": 5}')
    s = load_settings()
    assert s.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert s.debounce_ms == 0
    assert [h["x-token"].get_secret_value() for h in s.callback_headers] == ["s3cret"]
    assert "s3cret" not in repr(s)
    assert s.safety_stock_overrides == {"WH1": 2, "WH1:SKU": 5}


@pytest.mark.parametrize(
    ("var", "value", "named"),
    [
        ("INVSYNC_DEBOUNCE_MS", "soon", "INVSYNC_DEBOUNCE_MS"),
        ("INVSYNC_WEB_PORT", "70000", "INVSYNC_WEB_PORT"),
        # Faust's web server refuses port 0 (no ephemeral port) with a traceback.
        ("INVSYNC_WEB_PORT", "0", "INVSYNC_WEB_PORT"),
        ("INVSYNC_COMMIT_INTERVAL_MS", "0", "INVSYNC_COMMIT_INTERVAL_MS"),
        ("INVSYNC_CALLBACK_HEADERS", "not json", "INVSYNC_CALLBACK_HEADERS"),
        ("INVSYNC_TOPIC_INVENTORY", "bad topic!", "INVSYNC_TOPIC_INVENTORY"),
        ("INVSYNC_MAX_DELAY_MS", "10", "INVSYNC_MAX_DELAY_MS"),
        ("INVSYNC_CONSOLIDATED", "maybe", "INVSYNC_CONSOLIDATED"),
        ("INVSYNC_TOPIC_INVENTORY_CONSOLIDATED", "a b", "INVSYNC_TOPIC_INVENTORY_CONSOLIDATED"),
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


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("INVSYNC_CALLBACK_HEADERS", '{"authPassword": ["hunter2"]}'),
        ("INVSYNC_CALLBACK_HEADERS", '[{"authPassword": "ok"}, "hunter2"]'),
        ("INVSYNC_CALLBACK_HEADERS", "hunter2"),
        ("INVSYNC_MARKETPLACE_HEADERS", '{"Authorization": ["Bearer hunter2"]}'),
        ("INVSYNC_MARKETPLACE_HEADERS", '["Bearer hunter2"]'),
        ("INVSYNC_MARKETPLACE_HEADERS", "Bearer hunter2"),
        ("INVSYNC_INCREFF_PASSWORD", "hunter2"),
    ],
)
def test_no_secret_in_any_settings_error(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    """Each secret variable, malformed or beside a bad neighbour: its value never shows."""
    monkeypatch.setenv(var, value)
    monkeypatch.setenv("INVSYNC_INCREFF_BASE_URL", "http://increff.example")  # no username
    monkeypatch.setenv("INVSYNC_DEBOUNCE_MS", "soon")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "hunter2" not in message
    assert "INVSYNC_DEBOUNCE_MS" in message


def test_every_bad_variable_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVSYNC_DEBOUNCE_MS", "soon")
    monkeypatch.setenv("INVSYNC_WEB_PORT", "70000")
    monkeypatch.setenv("INVSYNC_TOPIC_INVENTORY", "bad topic!")
    monkeypatch.setenv("INVSYNC_MARKETPLACE_HEADERS", "nope")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    for var in (
        "INVSYNC_DEBOUNCE_MS",
        "INVSYNC_WEB_PORT",
        "INVSYNC_TOPIC_INVENTORY",
        "INVSYNC_MARKETPLACE_HEADERS",
    ):
        assert var in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "other", ["INVSYNC_TOPIC_INVENTORY", "INVSYNC_TOPIC_STOCK_EVENTS", "INVSYNC_TOPIC_DEAD_LETTERS"]
)
def test_the_consolidated_topic_is_a_topic_of_its_own(
    monkeypatch: pytest.MonkeyPatch, other: str
) -> None:
    monkeypatch.setenv("INVSYNC_CONSOLIDATED", "true")
    monkeypatch.setenv(other, "shared.topic")
    monkeypatch.setenv("INVSYNC_TOPIC_INVENTORY_CONSOLIDATED", "shared.topic")
    with pytest.raises(SettingsError, match="INVSYNC_TOPIC_INVENTORY_CONSOLIDATED"):
        load_settings()
    monkeypatch.setenv("INVSYNC_TOPIC_INVENTORY_CONSOLIDATED", "invsync-inventory-by-sku")
    with pytest.raises(SettingsError, match="a topic of its own"):
        load_settings()  # the internal by-SKU topic of app id `invsync`
    monkeypatch.setenv("INVSYNC_TOPIC_INVENTORY_CONSOLIDATED", "sku.inventory")
    assert load_settings().consolidated is True


def test_cross_field_rules_are_listed_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVSYNC_MAX_DELAY_MS", "10")
    monkeypatch.setenv("INVSYNC_INCREFF_BASE_URL", "http://increff.example")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "INVSYNC_MAX_DELAY_MS" in str(info.value)
    assert "INVSYNC_INCREFF_USERNAME" in str(info.value)


@pytest.mark.parametrize(
    ("value", "sets"),
    [
        ('{"a": "1", "b": "2"}', [{"a": "1", "b": "2"}]),
        ('[{"a": "old"}, {"a": "new"}]', [{"a": "old"}, {"a": "new"}]),
        ("{}", []),
        ("", []),
    ],
)
def test_callback_headers_hold_one_or_several_sets(
    monkeypatch: pytest.MonkeyPatch, value: str, sets: list[dict[str, str]]
) -> None:
    monkeypatch.setenv("INVSYNC_CALLBACK_HEADERS", value)
    got = load_settings().callback_headers
    assert [{k: v.get_secret_value() for k, v in h.items()} for h in got] == sets


@pytest.mark.parametrize("value", ["[{}]", '[{"a": "1"}, {}]', '["a"]', "5"])
def test_an_empty_or_odd_header_set_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("INVSYNC_CALLBACK_HEADERS", value)
    with pytest.raises(SettingsError, match="INVSYNC_CALLBACK_HEADERS"):
        load_settings()


def test_callback_auth_is_required_unless_explicitly_off(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="INVSYNC_CALLBACK_AUTH=none"):
        require_callback_auth(load_settings())
    monkeypatch.setenv("INVSYNC_CALLBACK_AUTH", "none")
    assert require_callback_auth(load_settings()) is False
    monkeypatch.setenv("INVSYNC_CALLBACK_AUTH", "headers")
    monkeypatch.setenv("INVSYNC_CALLBACK_HEADERS", '{"a": "1"}')
    assert require_callback_auth(load_settings()) is True


def test_worker_without_callback_headers_refuses_to_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
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
    assert "INVSYNC_CALLBACK_HEADERS" in lines[0]
    assert "INVSYNC_CALLBACK_AUTH=none" in lines[0]


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


def test_the_advertised_url_is_given_or_derived(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    assert load_settings().advertised_url == f"http://{socket.gethostname()}:6066"
    monkeypatch.setenv("INVSYNC_WEB_HOST", "10.0.0.7")
    monkeypatch.setenv("INVSYNC_WEB_PORT", "7001")
    assert load_settings().advertised_url == "http://10.0.0.7:7001"
    monkeypatch.setenv("INVSYNC_WEB_URL", "https://worker-2.internal:8443/")
    assert load_settings().advertised_url == "https://worker-2.internal:8443"
    monkeypatch.setenv("INVSYNC_WEB_URL", " ")
    assert load_settings().advertised_url == "http://10.0.0.7:7001"
    for bad in ("worker-2:8443", "http://w/path", "ftp://w:1"):
        monkeypatch.setenv("INVSYNC_WEB_URL", bad)
        with pytest.raises(SettingsError, match="INVSYNC_WEB_URL"):
            load_settings()
