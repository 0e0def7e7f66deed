"""Background jobs on PostgreSQL (procrastinate), in the ``procrastinate`` schema.

Domains declare tasks on their own :class:`procrastinate.Blueprint`; the runtime registers the
blueprints on one app and hands running tasks the services they need through :data:`services`.
"""

from __future__ import annotations

from typing import Any

import procrastinate

from smartbank.platform.db import libpq_url

#: Services that tasks look up at run time (filled by the runtime before the worker starts).
services: dict[str, Any] = {}


def create_job_app(database_url: str, blueprints: dict[str, procrastinate.Blueprint]) -> procrastinate.App:
    connector = procrastinate.PsycopgConnector(
        conninfo=libpq_url(database_url),
        kwargs={"options": "-c search_path=procrastinate"},
        min_size=1,
        max_size=4,
    )
    app = procrastinate.App(connector=connector)
    for namespace, blueprint in blueprints.items():
        app.add_tasks_from(blueprint, namespace=namespace)
    return app
