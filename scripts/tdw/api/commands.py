"""Command line of the API: ``tdw serve`` and ``tdw api refresh | client create|list|revoke|token | audit``."""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Annotated

import typer


def api_dsn_for(settings, warehouse_dsn: str) -> str:
    """Connection string the API uses: ``TDW_API_DSN`` if set, else the warehouse's (then ``SET ROLE``)."""
    return os.environ.get("TDW_API_DSN") or warehouse_dsn


def register(app) -> None:
    """Add ``tdw serve`` and the ``tdw api`` group to the Typer ``app``."""
    from rich.console import Console
    from rich.table import Table

    from .. import db
    from ..config import load_settings
    from ..errors import TdwError

    out = Console()
    api_app = typer.Typer(help="Secured API for state agents: data refresh, clients and tokens, audit log.",
                          no_args_is_help=True)
    client_app = typer.Typer(help="API clients (a territorial scope and data families each) and their tokens.",
                             no_args_is_help=True)
    app.add_typer(api_app, name="api")
    api_app.add_typer(client_app, name="client")

    @app.command("serve")
    def serve_cmd(
        host: Annotated[str, typer.Option(metavar="ADDRESS", help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(metavar="PORT", help="TCP port.")] = 8000,
        refresh: Annotated[bool, typer.Option("--refresh", help="Refresh the API tables from the marts first.")] = False,
    ) -> None:
        """Serve the API with uvicorn (OpenAPI description at /docs and /openapi.json)."""
        import uvicorn

        from . import security
        from .app import create_app

        settings = load_settings()
        dsn = db.warehouse_dsn(settings)
        security.setup(dsn, settings)
        if refresh:
            security.refresh(dsn, settings)
        when = security.refreshed_at(dsn)
        if when is None:
            raise TdwError("the API tables do not exist yet: run 'tdw api refresh' after building the marts "
                           "(or 'tdw serve --refresh')")
        out.print(f"API data refreshed at {when:%Y-%m-%d %H:%M %Z}; serving on http://{host}:{port} (docs at /docs)")
        uvicorn.run(create_app(api_dsn_for(settings, dsn), settings, sheet_dsn=dsn), host=host, port=port,
                    log_level="info", proxy_headers=True)

    @api_app.command("refresh")
    def refresh_cmd() -> None:
        """Copy the marts the API serves into schema api, with their row-level security policies (after each build)."""
        from . import security

        settings = load_settings()
        counts = security.refresh(db.warehouse_dsn(settings), settings)
        out.print("api tables refreshed: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))

    @client_app.command("create")
    def client_create(
        name: Annotated[str, typer.Argument(metavar="NAME", help="Client name, e.g. 'DREAL IDF inspection'.")],
        families: Annotated[str, typer.Option(metavar="FAMILIES", help="Data families, comma-separated: establishments, icpe, flows.")],
        national: Annotated[bool, typer.Option("--national", help="Whole country.")] = False,
        regions: Annotated[str | None, typer.Option(metavar="CODES", help="Régions (INSEE codes), comma-separated, e.g. 11,84.")] = None,
        departements: Annotated[str | None, typer.Option(metavar="CODES", help="Départements (INSEE codes), e.g. 75,92,93.")] = None,
        expires_in_days: Annotated[int, typer.Option(metavar="DAYS", help="Token lifetime in days.")] = 365,
        rate_limit: Annotated[int, typer.Option(metavar="N", help="Requests per minute (sliding window).")] = 120,
        description: Annotated[str | None, typer.Option(metavar="TEXT", help="Free text: service, contact, ticket.")] = None,
    ) -> None:
        """Create a client and print its token ONCE (only its SHA-256 is stored)."""
        from .auth import create_client

        settings = load_settings()
        client_id, token, expires_at = create_client(
            db.warehouse_dsn(settings), settings, name, national=national,
            regions=[regions] if regions else None, departements=[departements] if departements else None,
            families=[families], ttl_days=expires_in_days, rate_limit_per_minute=rate_limit, description=description)
        out.print(f"client {client_id} '{name}' created; token valid until {expires_at:%Y-%m-%d}.")
        out.print("Token (shown once, keep it in a secret store):", style="bold")
        print(token)

    @client_app.command("token")
    def client_token(
        client: Annotated[str, typer.Argument(metavar="CLIENT", help="Client name or number.")],
        expires_in_days: Annotated[int, typer.Option(metavar="DAYS", help="Token lifetime in days.")] = 365,
    ) -> None:
        """Issue one more token for a client (rotation); revoke the old one with 'revoke --token PREFIX'."""
        from .auth import new_client_token

        settings = load_settings()
        token, expires_at = new_client_token(db.warehouse_dsn(settings), settings, client, ttl_days=expires_in_days)
        out.print(f"new token valid until {expires_at:%Y-%m-%d} (shown once):", style="bold")
        print(token)

    @client_app.command("list")
    def client_list(
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    ) -> None:
        """List the clients: scope, families, rate limit, active tokens, last use."""
        from .auth import list_clients

        settings = load_settings()
        rows = list_clients(db.warehouse_dsn(settings), settings)
        if as_json:
            for r in rows:
                print(json.dumps(r, default=str, ensure_ascii=False))
            return
        table = Table("id", "name", "scope", "families", "req/min", "active tokens", "next expiry", "last used",
                      "revoked")
        for r in rows:
            table.add_row(str(r["client_id"]), r["name"], r["scope"], ",".join(r["families"]),
                          str(r["rate_limit_per_minute"]), str(r["active_tokens"]), _day(r["next_expiry"]),
                          _minute(r["last_used_at"]), _day(r["revoked_at"]))
        out.print(table)

    @client_app.command("revoke")
    def client_revoke(
        client: Annotated[str, typer.Argument(metavar="CLIENT", help="Client name or number.")],
        token: Annotated[str | None, typer.Option(metavar="PREFIX", help="Revoke only the token starting with these 8 characters.")] = None,
    ) -> None:
        """Revoke a client and all its tokens (or one token with --token); effective on the next request."""
        from .auth import revoke

        settings = load_settings()
        n = revoke(db.warehouse_dsn(settings), settings, client, token_prefix=token)
        out.print(f"{n} token(s) revoked" + ("" if token else f"; client '{client}' revoked"))

    @api_app.command("audit")
    def audit_cmd(
        client: Annotated[str | None, typer.Option(metavar="CLIENT", help="Only this client (name or number).")] = None,
        since: Annotated[datetime | None, typer.Option(metavar="YYYY-MM-DD[THH:MM:SS]", help="Only calls at or after this time (local).")] = None,
        siret: Annotated[str | None, typer.Option(metavar="SIRET", help="Only calls that named or returned this SIRET.")] = None,
        limit: Annotated[int, typer.Option(metavar="N", help="Rows to show, newest first.")] = 50,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    ) -> None:
        """Show the audit log: who called what, with which parameters, which SIRETs, with which status."""
        from .auth import read_audit

        settings = load_settings()
        rows = read_audit(db.warehouse_dsn(settings), settings, client=client, since=since, siret=siret, limit=limit)
        if as_json:
            for r in rows:
                print(json.dumps(r, default=str, ensure_ascii=False))
            return
        table = Table("time", "client", "status", "endpoint", "parameters", "SIRETs", "ms")
        for r in rows:
            sirets = r["sirets"]
            shown = ",".join(sirets[:3]) + (f" (+{len(sirets) - 3})" if len(sirets) > 3 else "")
            table.add_row(f"{r['logged_at']:%Y-%m-%d %H:%M:%S}", r["client"] or "-", str(r["status"]),
                          f"{r['method']} {r['endpoint']}", json.dumps(r["parameters"], ensure_ascii=False),
                          shown, str(r["duration_ms"]))
        out.print(table)


def _day(value) -> str:
    return f"{value:%Y-%m-%d}" if value else "-"


def _minute(value) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else "-"
