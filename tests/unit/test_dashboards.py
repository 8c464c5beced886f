"""The Grafana dashboards: generated from dashboards/generate.py, committed as generated.

The committed JSON is what Grafana provisions, so a hand edit (or a generator change whose
output was not committed) must fail here. The live check of every query against a real
Prometheus is tests/integration/test_prometheus.py.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "dashboards" / "grafana"
SELECTOR = re.compile(r"\b((?:invsync|process)_[a-z_]+)(\{[^}]*\})?")


@pytest.fixture(scope="module")
def generate() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "dashboards_generate", ROOT / "dashboards/generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def boards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in GRAFANA.glob("*.json")}


def targets(board: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(panel, t) for panel in board["panels"] for t in panel.get("targets", [])]


def test_committed_dashboards_are_what_the_generator_writes(generate: ModuleType) -> None:
    generated: dict[str, str] = generate.render_all()
    committed = {p.name: p.read_text(encoding="utf-8") for p in GRAFANA.glob("*.json")}
    assert sorted(committed) == sorted(generated), "a dashboard file is missing or extra"
    stale = [name for name, text in generated.items() if committed[name] != text]
    assert not stale, f"{stale} differ from dashboards/generate.py: run `make dashboards`"


def test_check_mode_reports_a_stale_file(
    generate: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    for name, text in generate.render_all().items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    monkeypatch.setattr(generate, "OUT", tmp_path)
    assert generate.main(["--check"]) == 0
    (tmp_path / "order-lifecycle.json").write_text("{}", encoding="utf-8")
    assert generate.main(["--check"]) == 1
    assert "order-lifecycle.json" in capsys.readouterr().out
    assert (tmp_path / "order-lifecycle.json").read_text(encoding="utf-8") == "{}"


def test_dashboards_use_the_datasource_variable_never_a_uid() -> None:
    for name, board in boards().items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource", name
        assert variables["datasource"]["query"] == "prometheus", name
        instance = variables["instance"]
        assert instance["type"] == "query" and instance["multi"] and instance["includeAll"]
        assert instance["datasource"]["uid"] == "${datasource}", name
        for panel, target in targets(board):
            assert panel["datasource"]["uid"] == "${datasource}", (name, panel["title"])
            assert target["datasource"]["uid"] == "${datasource}", (name, panel["title"])


def test_every_series_is_scoped_to_the_instance_variable() -> None:
    for name, board in boards().items():
        for panel, target in targets(board):
            found = SELECTOR.findall(target["expr"])
            assert found, (name, panel["title"], target["expr"])
            for metric, matchers in found:
                assert 'instance=~"$instance"' in matchers, (name, panel["title"], metric)


def test_latency_lines_follow_the_configured_windows() -> None:
    board = boards()["inventory-sync.json"]
    panel = next(p for p in board["panels"] if p["title"] == "End-to-end latency")
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    # No fixed red line: with the default 500 ms debounce a fixed 50 ms one is always crossed.
    assert [s["value"] for s in steps] == [None], steps
    exprs = {t["legendFormat"]: t["expr"] for t in panel["targets"]}
    assert "invsync_config_debounce_seconds" in exprs["target: debounce + 50 ms"]
    assert exprs["target: debounce + 50 ms"].endswith("+ 0.05")
    assert "invsync_config_max_delay_seconds" in exprs["max delay"]
    styled = {o["matcher"]["options"] for o in panel["fieldConfig"]["overrides"]}
    assert styled == {"target: debounce + 50 ms", "max delay"}


def test_panel_ids_are_unique_and_panels_do_not_overlap() -> None:
    for name, board in boards().items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        cells: set[tuple[int, int]] = set()
        for p in board["panels"]:
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24, (name, p["title"])
            mine = {
                (x, y)
                for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])
            }
            assert not cells & mine, f"{name}: {p['title']} overlaps another panel"
            cells |= mine
