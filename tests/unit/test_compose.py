"""docker-compose.yml and the Dockerfile: everything they build from or mount exists.

`docker compose config -q` is used too when the compose plugin is installed (it needs
no engine); otherwise only that check is skipped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DASHBOARDS = ROOT / "dashboards"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE)
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    assert isinstance(data.get("services"), dict) and data["services"], "no services"
    return data


def host_path(source: str) -> Path | None:
    """The host path of a bind mount source; None for a named volume."""
    if source.startswith(("/", ".", "~")):
        return (ROOT / source).resolve() if not source.startswith("/") else Path(source)
    return None


def mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of every volume of a service, short or long syntax."""
    out: list[tuple[str, str]] = []
    for volume in service.get("volumes", []) or []:
        if isinstance(volume, str):
            parts = volume.split(":")
            if len(parts) >= 2:
                out.append((parts[0], parts[1]))
        elif isinstance(volume, dict) and volume.get("source"):
            out.append((str(volume["source"]), str(volume.get("target", ""))))
    return out


def test_dockerfile_runs_the_worker() -> None:
    assert DOCKERFILE.is_file()
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "FROM python:3.11-slim" in text
    assert 'CMD ["invsync", "worker"]' in text
    assert "EXPOSE 6066" in text
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                if not source.startswith("--"):
                    assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"


def test_every_build_context_and_dockerfile_exists(compose: dict[str, Any]) -> None:
    built = 0
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is None:
            assert service.get("image"), f"service {name} has neither build nor image"
            continue
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = (
            "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        )
        ctx = (ROOT / context).resolve()
        assert ctx.is_dir(), f"service {name}: build context {context} missing"
        assert (ctx / dockerfile).is_file(), f"service {name}: {dockerfile} missing in {ctx}"
        built += 1
    assert built >= 3, "worker, mock-increff and mock-marketplace are built from the Dockerfile"


def test_every_mounted_file_or_directory_exists(compose: dict[str, Any]) -> None:
    named = set((compose.get("volumes") or {}).keys())
    checked = 0
    for name, service in compose["services"].items():
        for source, target in mounts(service):
            path = host_path(source)
            if path is None:
                assert source in named, f"service {name}: volume {source} is not declared"
                continue
            assert path.exists(), f"service {name}: mounts {source} -> {target}, missing"
            checked += 1
    assert checked >= 3, "prometheus.yml, provisioning and dashboards are mounted"


def test_services_and_their_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("kafka", "worker", "mock-increff", "mock-marketplace", "prometheus", "grafana"):
        assert name in services, f"service {name} missing"
    assert services["worker"]["command"] == ["invsync", "worker"]
    assert services["worker"]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert services["mock-increff"]["command"][:2] == ["invsync", "mock-increff"]
    assert services["mock-marketplace"]["command"][:2] == ["invsync", "mock-marketplace"]
    assert "8081" in services["mock-increff"]["command"]
    assert "8082" in services["mock-marketplace"]["command"]


def test_prometheus_scrapes_the_worker(compose: dict[str, Any]) -> None:
    config = load_yaml(DASHBOARDS / "prometheus.yml")
    targets = [
        target
        for job in config["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    port = compose["services"]["worker"]["environment"]["INVSYNC_WEB_PORT"]
    assert f"worker:{port}" in targets


def test_grafana_provisioning_matches_the_dashboards(compose: dict[str, Any]) -> None:
    datasources = load_yaml(DASHBOARDS / "provisioning/datasources/prometheus.yml")
    uids = {d["uid"] for d in datasources["datasources"]}
    assert "prometheus" in uids

    providers = load_yaml(DASHBOARDS / "provisioning/dashboards/invsync.yml")["providers"]
    grafana_mounts = dict(mounts(compose["services"]["grafana"]))
    mounted_at = {target for source, target in grafana_mounts.items() if "grafana" in source}
    for provider in providers:
        assert provider["options"]["path"] in mounted_at, "provider path is not the mount target"

    boards = sorted((DASHBOARDS / "grafana").glob("*.json"))
    assert [b.name for b in boards] == ["inventory-sync.json", "order-lifecycle.json"]
    types = {d["type"] for d in datasources["datasources"]}
    for board in boards:
        data = json.loads(board.read_text(encoding="utf-8"))
        assert data["schemaVersion"] >= 39, board.name
        text = board.read_text(encoding="utf-8")
        assert "${DS_" not in text and "__inputs" not in data, f"{board.name} is an export"
        # Panels use the $datasource variable, which offers every provisioned datasource
        # of its type: the provisioning must have one.
        variable = next(v for v in data["templating"]["list"] if v["name"] == "datasource")
        assert variable["query"] in types, board.name


def test_docker_compose_config_is_valid() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker CLI not installed")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        pytest.skip("docker compose plugin not installed")
    done = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_prometheus_in_compose_has_the_alert_rules(compose: dict[str, Any]) -> None:
    config = load_yaml(DASHBOARDS / "prometheus.yml")
    prom = dict(mounts(compose["services"]["prometheus"]))
    config_dir = Path(prom["./dashboards/prometheus.yml"]).parent
    for rule_file in config["rule_files"]:
        assert f"./dashboards/{rule_file}" in prom, f"{rule_file} is not mounted"
        assert Path(prom[f"./dashboards/{rule_file}"]) == config_dir / rule_file
