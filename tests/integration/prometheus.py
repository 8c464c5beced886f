"""A real Prometheus server for tests, and the PromQL of the checked-in dashboards.

The binary is Debian's `prometheus` package; when it is missing and the test runs as
root with apt-get available, it is installed (as CI does), otherwise the test skips.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import pytest

from invsync import localkafka

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_FILES = (
    ROOT / "dashboards/grafana/inventory-sync.json",
    ROOT / "dashboards/grafana/order-lifecycle.json",
)

# Grafana's built-in variables, as Grafana would expand them for a 1 s scrape interval, and
# the dashboards' own: `$instance` with "All" selected (the test's only worker matches).
GRAFANA_VARIABLES = {
    "$__rate_interval": "30s",
    "$__interval": "1s",
    "$__range": "5m",
    "$instance": ".+",
}


def prometheus_binary() -> str:
    """Path of `prometheus`, installing the Debian package when absent and allowed."""
    found = shutil.which("prometheus")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        pytest.skip("prometheus not installed (Debian: apt-get install -y prometheus)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["update", "-qq"], ["install", "-y", "-qq", "prometheus"]):
        done = subprocess.run([apt, *args], env=env, capture_output=True, timeout=600, check=False)
        if done.returncode != 0:
            pytest.fail(f"apt-get {' '.join(args)} failed:\n{done.stderr.decode()[-2000:]}")
    found = shutil.which("prometheus")
    if found is None:
        pytest.fail("apt-get installed prometheus but it is not on PATH")
    return found


class PrometheusServer:
    """`prometheus` on a free local port, scraping `targets` every `scrape_interval`."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        targets: list[str],
        *,
        scrape_interval: str = "1s",
        metrics_path: str = "/metrics",
    ) -> None:
        self.binary = binary
        self.workdir = workdir
        self.targets = targets
        self.scrape_interval = scrape_interval
        self.metrics_path = metrics_path
        self.port = localkafka.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        config = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "scrape_configs": [
                {
                    "job_name": "invsync",
                    "metrics_path": self.metrics_path,
                    "scrape_timeout": self.scrape_interval,
                    "static_configs": [{"targets": self.targets}],
                }
            ],
        }
        path = self.workdir / "prometheus.yml"
        path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
        return path

    async def start(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"prometheus exited early:\n{self.log_tail()}")
                try:
                    if (await client.get(f"{self.url}/-/ready")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"prometheus not ready within {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def query(self, client: httpx.AsyncClient, expr: str) -> dict[str, Any]:
        """`/api/v1/query` at now; the decoded JSON answer (errors included)."""
        response = await client.get(f"{self.url}/api/v1/query", params={"query": expr})
        body: dict[str, Any] = response.json()
        return body

    async def targets_up(self, client: httpx.AsyncClient) -> list[dict[str, Any]]:
        response = await client.get(f"{self.url}/api/v1/targets")
        active: list[dict[str, Any]] = response.json()["data"]["activeTargets"]
        return active

    async def scrapes(self, client: httpx.AsyncClient) -> int:
        """Successful scrapes of the worker so far (samples of `up == 1`)."""
        answer = await self.query(client, 'count_over_time((up{job="invsync"} == 1)[5m:1s])')
        result = answer.get("data", {}).get("result", [])
        return int(float(result[0]["value"][1])) if result else 0


@dataclass(frozen=True)
class DashboardQuery:
    dashboard: str
    panel: str
    expr: str

    @property
    def promql(self) -> str:
        return to_promql(self.expr)

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel}: {self.expr}"


def to_promql(expr: str) -> str:
    """Expand Grafana's variables; any other `$variable` is left for Prometheus to reject."""
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    return expr


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in panels:
        out.append(panel)
        out.extend(_panels(panel.get("panels", [])))  # collapsed rows nest their panels
    return out


def dashboard_queries(paths: tuple[Path, ...] = DASHBOARD_FILES) -> list[DashboardQuery]:
    """Every PromQL `expr` of every panel target of the dashboards."""
    queries: list[DashboardQuery] = []
    for path in paths:
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in _panels(board.get("panels", [])):
            for target in panel.get("targets", []):
                expr = target.get("expr")
                if expr:
                    queries.append(DashboardQuery(board["title"], panel.get("title", "?"), expr))
    return queries


METRIC_NAME = re.compile(r"\binvsync_[a-z_]+")


def metric_names(queries: list[DashboardQuery]) -> set[str]:
    return {name for q in queries for name in METRIC_NAME.findall(q.expr)}


async def check_queries(
    prom: PrometheusServer, client: httpx.AsyncClient, queries: list[DashboardQuery]
) -> tuple[list[str], list[str]]:
    """(queries Prometheus rejected, with its error; queries that returned no data)."""
    errors: list[str] = []
    empty: list[str] = []
    for query in queries:
        answer = await prom.query(client, query.promql)
        if answer.get("status") != "success":
            errors.append(f"{query}\n    -> {answer.get('errorType')}: {answer.get('error')}")
        elif not answer["data"]["result"]:
            empty.append(str(query))
    return errors, empty
