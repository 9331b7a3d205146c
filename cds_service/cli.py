"""``cds-service``: run the service (and, in later issues, try it against a FHIR server)."""

from __future__ import annotations

import typer
import uvicorn

from cds_service.settings import Settings

cli = typer.Typer(help="Sacral BSI CDS Hooks service.", no_args_is_help=True, add_completion=False)


@cli.command()
def serve() -> None:
    """Start the service on CDS_HOST:CDS_PORT (default 127.0.0.1:8080)."""
    settings = Settings()
    uvicorn.run(
        "cds_service.main:app",
        host=settings.host,
        port=settings.port,
        access_log=False,  # one structured line per hook call instead (cds_service.logs)
        log_level=settings.log_level.lower(),
    )


@cli.callback()
def _root() -> None:
    """Sacral BSI CDS Hooks service."""


def main() -> None:
    cli()
