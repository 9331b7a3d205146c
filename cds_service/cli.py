"""``cds-service``: run the service, or try it against a FHIR server without an EHR.

cds-service serve
cds-service demo-load --fhir-server URL
cds-service fire patient-view --fhir-server URL --patient ID
            [--service-url URL] [--prefetch] [--json] [--token TOKEN]
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import typer
import uvicorn
from rich.console import Console, Group
from rich.markdown import Markdown
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cds_service import sandbox
from cds_service.hooks.service import valid_base_url
from cds_service.settings import Settings

cli = typer.Typer(help="Sacral BSI CDS Hooks service.", no_args_is_help=True, add_completion=False)
fire_cli = typer.Typer(
    help="Fire a CDS hook at the service, as an EHR would.", no_args_is_help=True
)
cli.add_typer(fire_cli, name="fire")
out = Console()
err = Console(stderr=True)

FhirServer = Annotated[
    str, typer.Option("--fhir-server", help="FHIR R4 base URL, e.g. https://hapi.fhir.org/baseR4")
]
Token = Annotated[
    str | None, typer.Option("--token", help="Bearer token for the FHIR server, if it needs one")
]


@cli.command()
def serve() -> None:
    """Start the service on CDS_HOST:CDS_PORT (default 127.0.0.1:8080)."""
    settings = Settings()
    if settings.start_refusal:
        err.print(f"[bold red]Error:[/bold red] {escape(settings.start_refusal)}")
        raise typer.Exit(2)
    uvicorn.run(
        "cds_service.main:app",
        host=settings.host,
        port=settings.port,
        access_log=False,  # one structured line per hook call instead (cds_service.logs)
        log_level=settings.log_level.lower(),
    )


@cli.command("demo-load")
def demo_load(fhir_server: FhirServer, token: Token = None) -> None:
    """Upload the demo patients (a runner, a non-runner, an MRI-confirmed runner) as one
    transaction Bundle, dated to today, and print their ids."""
    fhir_server = _checked_url(fhir_server, "--fhir-server")
    records = sandbox.demo_records(datetime.now(UTC).date())
    resources = [r for record in records.values() for r in record]

    async def run() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            await sandbox.load(http, fhir_server, resources, token)

    _run(run())
    table = Table(title=f"Demo patients loaded into {fhir_server.rstrip('/')}")
    table.add_column("patient id")
    table.add_column("what the service should say")
    for _, pid, description in sandbox.demo_summary(records):
        table.add_row(pid, description)
    out.print(table)
    first = sandbox.patient_id(records["runner"])
    out.print(
        "Try: cds-service fire patient-view "
        f"--fhir-server {fhir_server.rstrip('/')} --patient {first}"
    )


@fire_cli.command("patient-view")
def fire_patient_view(
    fhir_server: FhirServer,
    patient: Annotated[str, typer.Option("--patient", help="the patient's id on the FHIR server")],
    service_url: Annotated[
        str | None,
        typer.Option(
            "--service-url",
            help="a running service, e.g. http://127.0.0.1:8080 (default: in-process)",
        ),
    ] = None,
    prefetch: Annotated[
        bool, typer.Option("--prefetch", help="fill the prefetch here, as an EHR would")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the raw CDS Hooks response")
    ] = False,
    token: Token = None,
) -> None:
    """Build the patient-view request an EHR would send, post it, and show the cards."""
    fhir_server = _checked_url(fhir_server, "--fhir-server")
    if service_url is not None:
        service_url = _checked_url(service_url, "--service-url")
    result = _run(_fire(fhir_server, patient, service_url, prefetch, token))
    if as_json:
        out.print_json(json.dumps(result))
        return
    show_cards(result)


async def _fire(
    fhir_server: str, patient: str, service_url: str | None, prefetch: bool, token: str | None
) -> Any:
    body = sandbox.hook_request(fhir_server, patient, token)
    async with httpx.AsyncClient(timeout=30) as http:
        if service_url:
            client = httpx.AsyncClient(base_url=service_url.rstrip("/"), timeout=30)
        else:
            from cds_service.main import create_app  # noqa: PLC0415 - only in-process mode needs the app

            # In-process: no network listener, so no caller to authenticate.
            app = create_app(
                Settings(database_url="sqlite:///:memory:", log_level="ERROR", require_jwt=False)
            )
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://in-process"
            )
        async with client:
            if prefetch:
                templates = await sandbox.discovery(client)
                body["prefetch"] = await sandbox.prefetch(
                    http, fhir_server, templates, patient, token
                )
            return await sandbox.fire(client, body)


_STYLE = {"info": "blue", "warning": "yellow", "critical": "red"}


def show_cards(result: dict[str, Any]) -> None:
    cards = result.get("cards", [])
    if not cards:
        out.print("[bold]No cards[/bold]: the service has nothing to say about this patient.")
    for card in cards:
        parts: list[Any] = []
        if card.get("detail"):
            parts.append(Markdown(card["detail"]))
        for suggestion in card.get("suggestions", []):
            kinds = ", ".join(
                f"{a['type']} {a.get('resource', {}).get('resourceType', '')}".strip()
                for a in suggestion.get("actions", [])
            )
            parts.append(Text(f"Suggestion: {suggestion['label']} ({kinds})", style="bold green"))
        for link in card.get("links", []):
            parts.append(Text(f"Link: {link['label']} <{link['url']}>", style="cyan"))
        style = _STYLE.get(card.get("indicator", "info"), "blue")
        title = f"[{style}]{card.get('indicator', 'info').upper()}[/{style}] {card['summary']}"
        out.print(Panel(Group(*parts), title=title, title_align="left", border_style=style))
    for action in result.get("systemActions", []):
        out.print(
            f"[bold]System action[/bold]: {action['type']} "
            f"{action.get('resource', {}).get('resourceType', '')}"
        )


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except sandbox.SandboxError as exc:
        err.print(f"[bold red]Error:[/bold red] {escape(str(exc))}")
        raise typer.Exit(exc.exit_code) from None
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        err.print(f"[bold red]Error:[/bold red] {type(exc).__name__}: {escape(str(exc))}")
        raise typer.Exit(1) from None


def _checked_url(url: str, what: str) -> str:
    if not valid_base_url(url):
        err.print(
            f"[bold red]Error:[/bold red] {what} {escape(repr(url))} is not an absolute "
            "http(s) URL "
            "(e.g. https://hapi.fhir.org/baseR4)."
        )
        raise typer.Exit(2)
    return url


@cli.callback()
def _root() -> None:
    """Sacral BSI CDS Hooks service."""


def main() -> None:
    cli()
