"""The application factory: one FastAPI app with every domain's routes, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from smartbank import __version__
from smartbank.banking import consumers as banking_consumers
from smartbank.banking import jobs as banking_jobs
from smartbank.banking.api import router as banking_router
from smartbank.banking.service import BankingConfig, BankingService
from smartbank.customers import jobs as customers_jobs
from smartbank.customers.api import router as customers_router
from smartbank.customers.service import CustomerService, pii_key_from
from smartbank.identity import jobs as identity_jobs
from smartbank.identity.api import router as identity_router
from smartbank.identity.credentials import Keys
from smartbank.identity.model import Permission
from smartbank.identity.service import IdentityService
from smartbank.kernel.clock import Clock, SystemClock
from smartbank.ledger import jobs as ledger_jobs
from smartbank.ledger.api import router as ledger_router
from smartbank.ledger.service import LedgerService
from smartbank.openbanking import events as openbanking_events
from smartbank.openbanking import jobs as openbanking_jobs
from smartbank.openbanking.api import router as openbanking_router
from smartbank.openbanking.service import OpenBankingService
from smartbank.platform import audit, jobs
from smartbank.platform.db import Database, create_engine, resolve_database_url
from smartbank.platform.inbox import Inbox
from smartbank.platform.keys import load_key
from smartbank.platform.migrate import VERSION_TABLE_SCHEMA, head_revision
from smartbank.platform.notify import OutboxNotifier
from smartbank.platform.outbox import OutboxRelay
from smartbank.platform.process import tune_gc
from smartbank.platform.settings import Settings, get_settings
from smartbank.web.deps import internal_or_staff
from smartbank.web.errors import document_errors, install_error_handlers
from smartbank.web.middleware import BodyLimit, RequestContext
from smartbank.web.notifications import router as notifications_router
from smartbank.web.ui.consents import router as consents_router
from smartbank.web.ui.developer import router as developer_router
from smartbank.web.ui.money import router as money_ui_router
from smartbank.web.ui.onboarding import router as onboarding_router
from smartbank.web.ui.routes import STATIC_DIR, PageRefused, page_refused
from smartbank.web.ui.routes import router as ui_router
from smartbank.web.ui.security import router as security_router
from smartbank.web.ui.staff import router as staff_router

JOB_BLUEPRINTS = {
    "ledger": ledger_jobs.blueprint,
    "identity": identity_jobs.blueprint,
    "audit": audit.blueprint,
    "customers": customers_jobs.blueprint,
    "banking": banking_jobs.blueprint,
    "openbanking": openbanking_jobs.blueprint,
}
VERSION_TABLE = f"{VERSION_TABLE_SCHEMA}.alembic_version"


@dataclass
class Runtime:
    """Everything a process holds: the database, the clock and the domain services."""

    settings: Settings
    database_url: str
    db: Database
    clock: Clock
    ledger: LedgerService
    relay: OutboxRelay
    identity: IdentityService
    customers: CustomerService
    banking: BankingService
    inbox: Inbox
    openbanking: OpenBankingService
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, database_url: str, clock: Clock | None = None) -> Runtime:
        db = Database(create_engine(database_url, settings), statement_timeout_ms=settings.db_statement_timeout_ms)
        clock = clock or SystemClock()
        relay = OutboxRelay(db)
        ledger = LedgerService(
            db,
            clock,
            batch_max=settings.ledger_batch_max,
            inflight_max=settings.ledger_inflight_max,
            batch_concurrency=settings.ledger_batch_concurrency,
            after_commit=relay.kick,
        )
        audit.configure_key(load_key(settings, "audit"))
        secret = load_key(settings, "secret")
        identity = IdentityService(db, clock, Keys(secret), staff_mfa_required=settings.staff_mfa_required)
        customers = CustomerService(
            db, clock, logins=identity, notifier=OutboxNotifier(settings.env), pii_key=pii_key_from(settings)
        )
        banking = BankingService(
            db, ledger, clock, customers, config=BankingConfig.from_settings(settings), after_commit=relay.kick
        )  # risk: allow-all until the risk domain exists (the decision is recorded with each payment)
        banking_consumers.subscribe(relay, banking)
        openbanking = OpenBankingService(
            db, clock, identity=identity, banking=banking, issuer=settings.issuer, signing_master_key=secret
        )
        openbanking_events.subscribe(relay, openbanking.notifications)
        return cls(
            settings,
            database_url,
            db,
            clock,
            ledger,
            relay,
            identity,
            customers,
            banking,
            Inbox(db, clock),
            openbanking,
        )

    async def start_background(self, *, worker: bool) -> None:
        """The outbox relay always; the job worker too when this process is also the worker."""
        tune_gc()  # start-up is over: what exists now lives as long as the process
        self._tasks.append(asyncio.create_task(self.relay.run(self._stop, self.settings.outbox_poll_interval_s)))
        if worker:
            self._tasks.append(asyncio.create_task(self.run_worker()))

    async def run_worker(self) -> None:
        jobs.services["ledger"] = self.ledger
        jobs.services["identity"] = self.identity
        jobs.services["customers"] = self.customers
        jobs.services["banking"] = self.banking
        jobs.services["openbanking"] = self.openbanking
        jobs.services["db"] = self.db
        job_app = jobs.create_job_app(self.database_url, JOB_BLUEPRINTS)
        async with job_app.open_async():
            await job_app.run_worker_async(install_signal_handlers=False, concurrency=2)

    async def close(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.ledger.drain()
        await self.db.dispose()


def create_app(
    settings: Settings | None = None,
    *,
    database_url: str | None = None,
    clock: Clock | None = None,
    worker: bool = False,
) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = database_url or resolve_database_url(settings)
        runtime = Runtime.build(settings, url, clock)
        await runtime.db.check_server()
        await runtime.start_background(worker=worker)
        app.state.runtime = runtime
        app.state.ledger = runtime.ledger
        app.state.identity = runtime.identity
        app.state.customers = runtime.customers
        app.state.banking = runtime.banking
        app.state.inbox = runtime.inbox
        app.state.openbanking = runtime.openbanking
        try:
            yield
        finally:
            await runtime.close()

    app = FastAPI(
        title="smartbank API",
        version=__version__,
        description="smartbank: an open smart-banking platform. Errors are "
        '`{"error": {"code", "message", "details"}}` with stable codes.',
        lifespan=lifespan,
    )
    app.state.settings = settings  # read by dependencies that take limits from settings
    install_error_handlers(app)
    document_errors(app)
    head = head_revision()  # read the migration scripts once, not on every readiness probe
    app.include_router(
        ledger_router,
        dependencies=[Depends(internal_or_staff(Permission.LEDGER_OPERATE))],
        responses={401: {"description": "No credentials"}, 403: {"description": "Not for this caller"}},
    )
    app.include_router(identity_router)
    app.include_router(customers_router)
    app.include_router(banking_router)
    app.include_router(notifications_router)
    # The open-banking authorization server and API: the RFCs' and OBIE's contracts, not in this document.
    app.include_router(openbanking_router)
    # The customer web app (server-rendered pages, not part of the OpenAPI document).
    app.include_router(ui_router)
    app.include_router(money_ui_router)
    app.include_router(onboarding_router)
    app.include_router(security_router)
    app.include_router(staff_router)
    app.include_router(consents_router)
    app.include_router(developer_router)
    app.add_exception_handler(PageRefused, page_refused)  # a customer page asked for by anyone else
    app.mount("/app/static", StaticFiles(directory=STATIC_DIR), name="ui-static")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/app/", status_code=307)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up (no dependency checked)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "Not ready"}})
    async def readyz(request: Request) -> JSONResponse:
        """The database answers and its schema is at the newest migration."""
        runtime: Runtime = request.app.state.runtime
        try:
            async with runtime.db.connect() as conn:
                current = None
                if (await conn.execute(text(f"SELECT to_regclass('{VERSION_TABLE}')"))).scalar_one() is not None:
                    current = (
                        await conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
                    ).scalar_one_or_none()
        except Exception:
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
        if current != head:
            return JSONResponse(
                {"status": "unavailable", "database": "ok", "migration": current, "expected": head}, status_code=503
            )
        return JSONResponse({"status": "ok", "database": "ok", "migration": current})

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContext)
    return app
