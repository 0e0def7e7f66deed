"""ASGI entry point for ``uvicorn smartbank.web.asgi:app`` (settings from the environment)."""

from __future__ import annotations

import os

from smartbank.web.app import create_app

app = create_app(worker=os.environ.get("SMARTBANK_SERVE_WORKER") == "1")
