"""The ``smartbank`` command."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from types import FrameType

import typer
from rich.console import Console

from smartbank.platform.db import Database, create_engine, resolve_database_url
from smartbank.platform.logging import configure_logging
from smartbank.platform.settings import get_settings

app = typer.Typer(help="smartbank: an open smart-banking platform.", no_args_is_help=True)
ledger_app = typer.Typer(help="Ledger operations.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
staff_app = typer.Typer(help="Staff logins.", no_args_is_help=True)
app.add_typer(staff_app, name="staff")
openbanking_app = typer.Typer(help="Open banking: partner apps and the sandbox.", no_args_is_help=True)
app.add_typer(openbanking_app, name="openbanking")
console = Console(stderr=True)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (a service manager, ``kill``) ends the process as Ctrl-C does: ``finally`` blocks and exit
    # handlers run, and the last of those stops an embedded PostgreSQL the process started. Its default
    # action would end the process at once and leave that server running. While uvicorn serves, it
    # takes SIGTERM over and raises it again once it has shut down, which lands here.
    sys.exit(128 + signum)


@app.callback()
def _main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _database_url() -> str:
    return resolve_database_url(get_settings())


@app.command()
def migrate() -> None:
    """Bring the database schema to the newest migration."""
    from smartbank.platform.migrate import current_revision, upgrade

    url = _database_url()
    upgrade(url)
    console.print(f"[green]database at migration {current_revision(url)}[/green]")


@app.command()
def serve(
    host: str = typer.Option(None, help="Address to bind (default SMARTBANK_HOST or 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default SMARTBANK_PORT or 8000)."),
    workers: int = typer.Option(None, help="uvicorn worker processes (default SMARTBANK_WORKERS or 1)."),
    worker: bool = typer.Option(False, "--worker/--no-worker", help="Also run the job worker in-process."),
) -> None:
    """Run the HTTP API (migrations first)."""
    import uvicorn

    from smartbank.platform.migrate import upgrade

    settings = get_settings()
    url = _database_url()
    upgrade(url)
    os.environ["DATABASE_URL"] = url
    os.environ["SMARTBANK_SERVE_WORKER"] = "1" if worker else "0"
    host = host or settings.host
    port = port or settings.port
    workers = workers or settings.workers
    console.print(f"smartbank API on http://{host}:{port}  (docs: /docs, health: /healthz, metrics: /metrics)")
    uvicorn.run(
        "smartbank.web.asgi:app",
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


@app.command()
def worker() -> None:
    """Run background jobs (pending-transfer expiry) and the outbox relay."""
    from smartbank.platform.migrate import upgrade
    from smartbank.web.app import Runtime

    settings = get_settings()
    url = _database_url()
    upgrade(url)

    async def main() -> None:
        runtime = Runtime.build(settings, url)
        await runtime.start_background(worker=False)
        try:
            await runtime.run_worker()
        finally:
            await runtime.close()

    asyncio.run(main())


@app.command()
def up(
    with_demo: bool = typer.Option(True, "--demo/--no-demo", help="Seed the demo bank first (once; development only)."),
) -> None:
    """Start the whole platform on this machine: database, migrations, demo bank, API and worker."""
    settings = get_settings()
    if with_demo and settings.env == "development":
        from smartbank.demo import DemoIncomplete

        try:
            _seed_demo(None, None, None)
        except DemoIncomplete as exc:
            console.print(f"[yellow]demo: {exc}; serving without it[/yellow]")
    serve(host=None, port=None, workers=None, worker=True)  # type: ignore[arg-type]


@app.command()
def demo(
    customers: int = typer.Option(None, min=1, max=2000, help="Customers besides the businesses (default 300)."),
    months: int = typer.Option(None, min=1, max=24, help="Months of payment history, ending now (default 6)."),
    seed: int = typer.Option(None, help="Seed of names, documents and payments (default 2026)."),
) -> None:
    """Seed a believable demo bank through the services, once; print the logins to try."""
    from smartbank.demo import DemoIncomplete

    try:
        _seed_demo(customers, months, seed)
    except DemoIncomplete as exc:
        console.print(f"[red]demo: {exc}[/red]")
        sys.exit(1)


def _seed_demo(customers: int | None, months: int | None, seed: int | None) -> None:
    from smartbank import demo as demo_bank
    from smartbank.platform.migrate import upgrade

    settings = get_settings()
    if settings.env == "production":
        raise demo_bank.DemoIncomplete("the demo bank has published passwords; it never runs in production")
    url = _database_url()
    upgrade(url)
    demo_bank.run(
        settings,
        url,
        console,
        customers=customers or demo_bank.DEFAULT_CUSTOMERS,
        months=months or demo_bank.DEFAULT_MONTHS,
        seed_value=demo_bank.DEFAULT_SEED if seed is None else seed,
        base_url=f"http://{settings.host}:{settings.port}",
    )


@app.command()
def openapi(
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Print the HTTP API's OpenAPI document (the frozen copy is docs/api/openapi.json)."""
    from smartbank.web.app import create_app
    from smartbank.web.openapi import render

    text = render(create_app(get_settings()).openapi())
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"[green]wrote {output}[/green]")


@ledger_app.command("verify")
def ledger_verify() -> None:
    """Check every ledger invariant; exit 1 and list what is wrong if any fails."""
    from smartbank.kernel.clock import SystemClock
    from smartbank.ledger.service import LedgerService

    settings = get_settings()
    url = _database_url()

    async def main() -> list[str]:
        db = Database(create_engine(url, settings))
        try:
            return await LedgerService(db, SystemClock()).verify()
        finally:
            await db.dispose()

    problems = asyncio.run(main())
    if problems:
        console.print(f"[red]ledger verify: {len(problems)} problem(s)[/red]")
        for problem in problems:
            print(problem)
        sys.exit(1)
    console.print("[green]ledger verify: all invariants hold[/green]")


@audit_app.command("verify")
def audit_verify() -> None:
    """Chain finished audit rows, then check every row and link; exit 1 naming each bad row."""
    from smartbank.platform import audit
    from smartbank.platform.keys import load_key

    settings = get_settings()
    url = _database_url()

    async def main() -> audit.VerifyReport:
        audit.configure_key(load_key(settings, "audit"))
        db = Database(create_engine(url, settings))
        try:
            return await audit.verify(db)
        finally:
            await db.dispose()

    report = asyncio.run(main())
    if not report.ok:
        console.print(f"[red]audit verify: {len(report.problems)} problem(s) in {report.rows} rows[/red]")
        for problem in report.problems:
            print(problem)
        sys.exit(1)
    console.print(
        f"[green]audit verify: {report.rows} rows, {report.chained} chained, chain intact[/green]"
        + (f" ({report.pending} of still-running transactions not chained yet)" if report.pending else "")
    )


@audit_app.command("chain")
def audit_chain() -> None:
    """Link audit rows of finished transactions into the hash chain now."""
    from smartbank.platform import audit
    from smartbank.platform.keys import load_key

    settings = get_settings()
    url = _database_url()

    async def main() -> int:
        audit.configure_key(load_key(settings, "audit"))
        db = Database(create_engine(url, settings))
        try:
            return await audit.chain_pending(db)
        finally:
            await db.dispose()

    console.print(f"audit chain: {asyncio.run(main())} row(s) linked")


@staff_app.command("create")
def staff_create(
    login: str = typer.Option(..., help="The staff member's e-mail."),
    role: list[str] = typer.Option(..., help="A role (repeat for several): admin, teller, risk_analyst, ..."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input."),
) -> None:
    """Create a staff login; prints a generated one-time password unless one is read from stdin."""
    import secrets

    from smartbank.identity.credentials import Keys
    from smartbank.identity.service import IdentityService, roles_of
    from smartbank.kernel.clock import SystemClock
    from smartbank.kernel.errors import DomainError
    from smartbank.platform import audit
    from smartbank.platform.keys import load_key

    settings = get_settings()
    url = _database_url()
    generated = not password_stdin
    password = secrets.token_urlsafe(18) if generated else sys.stdin.readline().rstrip("\n")

    async def main() -> str:
        audit.configure_key(load_key(settings, "audit"))
        db = Database(create_engine(url, settings))
        try:
            service = IdentityService(db, SystemClock(), Keys(load_key(settings, "secret")))
            return str(await service.create_staff(login=login, roles=roles_of(role), password=password))
        finally:
            await db.dispose()

    try:
        principal_id = asyncio.run(main())
    except DomainError as exc:
        console.print(f"[red]staff create: {exc.code}: {exc.message} {exc.details or ''}[/red]")
        sys.exit(1)
    console.print(f"[green]staff {login} created: {principal_id}[/green]")
    if generated:
        console.print("One-time password (shown once; change it and enrol MFA at first login):")
        print(password)


@openbanking_app.command("sandbox")
def openbanking_sandbox(
    config: Path = typer.Option(Path("smartbank-sandbox-partner.json"), help="Where to write the app's key file."),
    redirect_uri: str = typer.Option("http://localhost:8765/callback", help="The app's redirect URI."),
    name: str = typer.Option("Sandbox budget app", help="The app's name, shown on the consent screen."),
    notification_uri: str | None = typer.Option(None, help="Where to send event notifications (webhooks)."),
) -> None:
    """Register a sample sandbox partner app (private_key_jwt, ES256) and print how to run the flow."""
    from smartbank.openbanking.errors import OAuth2Error
    from smartbank.platform.migrate import upgrade
    from smartbank.sandbox import register_sample_partner

    settings = get_settings()
    url = _database_url()
    upgrade(url)
    try:
        partner = register_sample_partner(
            settings, url, config, name=name, redirect_uri=redirect_uri, notification_uri=notification_uri
        )
    except OAuth2Error as exc:
        console.print(f"[red]openbanking sandbox: {exc.error}: {exc.description}[/red]")
        sys.exit(1)
    print(partner.guide())


if __name__ == "__main__":
    app()
