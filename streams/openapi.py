"""`GET /openapi.json`: the worker's OpenAPI document, naming the auth headers it checks.

The document is generated from the wire models (`models.openapi`); only the header
names come from the settings, never their values.
"""

from __future__ import annotations

import faust
import orjson
from faust.web import Request, Response, View

from models.openapi import openapi_document
from streams.settings import Settings


def install_openapi(app: faust.App, settings: Settings) -> None:
    """Serve the document built once at start (it depends on nothing that changes)."""
    # Several accepted header sets (credential rotation): document every name once.
    names = list(dict.fromkeys(name for headers in settings.callback_headers for name in headers))
    body = orjson.dumps(openapi_document(names))

    @app.page("/openapi.json")
    class OpenApi(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(body, content_type="application/json")
