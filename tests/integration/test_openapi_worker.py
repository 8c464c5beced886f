"""`GET /openapi.json` on a real worker: the generated document, naming the configured
auth headers and never their values; every documented operation exists and answers
its documented errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from models.openapi import openapi_document
from tests.integration.support import WorkerProcess, isolated_env

pytestmark = pytest.mark.integration

SECRET = "cb-secret-value-93"
HEADERS = {"x-increff-token": SECRET}


@pytest.fixture
def worker(kafka_bootstrap: str, tmp_path: Path) -> Any:
    env = isolated_env(
        kafka_bootstrap, tmp_path / "data", INVSYNC_CALLBACK_HEADERS=json.dumps(HEADERS)
    )
    proc = WorkerProcess(env, tmp_path / "worker.log")
    proc.start(ready=True)
    yield proc
    proc.stop()


def _error_schema(document: dict[str, Any]) -> dict[str, Any]:
    media = document["components"]["responses"]["BadRequest"]["content"]["application/json"]
    return {"components": document["components"], **media["schema"]}


def test_worker_serves_the_generated_document(worker: WorkerProcess) -> None:
    response = httpx.get(f"{worker.web}/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert SECRET not in response.text
    document = response.json()
    assert document == openapi_document(["x-increff-token"])
    schemes = document["components"]["securitySchemes"]
    assert [s["name"] for s in schemes.values()] == ["x-increff-token"]

    error_schema = _error_schema(document)
    with httpx.Client(base_url=worker.web, timeout=10) as client:
        for path, operations in document["paths"].items():
            for method, op in operations.items():
                if path == "/openapi.json":
                    continue
                if op.get("security") == []:  # health, readiness, metrics: ready by now
                    answer = client.request(method.upper(), path)
                    assert answer.status_code == 200, (method, path, answer.text)
                    media = op["responses"]["200"]["content"]
                    if "application/json" in media:
                        jsonschema.validate(answer.json(), media["application/json"]["schema"])
                    continue
                # Documented: 401 without the header, 400 on a body or query that fails.
                refused = client.request(method.upper(), path)
                assert refused.status_code == 401, (method, path, refused.text)
                jsonschema.validate(refused.json(), error_schema)
                body = b"{" if "requestBody" in op else None
                bad = client.request(method.upper(), path, headers=HEADERS, content=body)
                assert bad.status_code == 400, (method, path, bad.text)
                assert bad.json()["hasError"] is True
                jsonschema.validate(bad.json(), error_schema)
