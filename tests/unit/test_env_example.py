"""`.env.example` lists every setting with its true default, and nothing else."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from streams.settings import Settings, load_settings

EXAMPLE = Path(__file__).parents[2] / ".env.example"
LINE = re.compile(r"^# ((?:KAFKA|INVSYNC)_[A-Z0-9_]+)=(.*)$")


def _env_name(field: str) -> str:
    return field.upper() if field.startswith("kafka_") else f"INVSYNC_{field.upper()}"


def _listed() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in EXAMPLE.read_text().splitlines():
        if match := LINE.match(line):
            assert match[1] not in found, f"{match[1]} listed twice"
            found[match[1]] = match[2]
    return found


def test_every_setting_is_listed_and_nothing_else() -> None:
    expected = {_env_name(field) for field in Settings.model_fields}
    assert set(_listed()) == expected


def test_the_listed_values_are_the_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith(("INVSYNC_", "KAFKA_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    listed = _listed()
    for name, value in listed.items():
        if value:
            monkeypatch.setenv(name, value)
    from_example = load_settings()
    defaults = Settings.model_construct()  # defaults only, no environment
    for field in Settings.model_fields:
        name = _env_name(field)
        if listed[name]:
            assert getattr(from_example, field) == getattr(defaults, field), name
        else:
            assert getattr(defaults, field) in (None, ()), f"{name} has a default; list it"
