"""``cds-service``: run the service, or try it against a FHIR server without an EHR.

cds-service serve
cds-service demo-load --fhir-server URL
cds-service fire patient-view --fhir-server URL --patient ID
            [--service-url URL [--sign]] [--prefetch] [--json] [--token TOKEN]
cds-service fire order-select|order-sign --fhir-server URL --patient ID --order KIND ...
cds-service dev-token [--service-url URL] [--hook HOOK] [--feedback]  (development only)
cds-service --version
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console, Group
from rich.markdown import Markdown
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cds_service import sandbox
from cds_service.auth import dev_issuer
from cds_service.platform.wire import HOOKS, valid_base_url
from cds_service.services.sacral_bsi.content import load_content
from cds_service.settings import Settings

# Plain (click) help and usage errors: no boxes, which a narrow terminal cuts and wraps.
cli = typer.Typer(
    help="Sacral BSI CDS Hooks service.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
fire_cli = typer.Typer(
    help="Fire a CDS hook at the service, as an EHR would.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
cli.add_typer(fire_cli, name="fire")
out = Console()
# Errors are one line whatever the terminal's width (soft wrap: the terminal folds, not rich).
err = Console(stderr=True, soft_wrap=True)

FLAG = " "  # no "<bool>" after a flag in the help: it takes no value

DevKeyFolder = Annotated[
    Path,
    typer.Option(
        "--dev-key-folder", help="where `cds-service dev-token` keeps its development key"
    ),
]
FhirServer = Annotated[
    str, typer.Option("--fhir-server", help="FHIR R4 base URL, e.g. https://hapi.fhir.org/baseR4")
]
Token = Annotated[
    str | None, typer.Option("--token", help="Bearer token for the FHIR server, if it needs one")
]


Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        max=64,
        help="worker processes (default: CDS_WORKERS, else 1); they share the database",
    ),
]


@cli.command()
def serve(workers: Workers = None) -> None:
    """Start the service on CDS_HOST:CDS_PORT (default 127.0.0.1:8080)."""
    from cds_service import server  # noqa: PLC0415
    from cds_service.main import StartupError, load_settings  # noqa: PLC0415

    try:
        settings = load_settings()
        count = workers or settings.workers
        with server.metrics_directory(count):
            server.serve(settings, count)
    except StartupError as exc:
        _fail(str(exc), 2)


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


ServiceUrl = Annotated[
    str | None,
    typer.Option(
        "--service-url",
        help="a running service, e.g. http://127.0.0.1:8080 (default: in-process)",
    ),
]
Patient = Annotated[str, typer.Option("--patient", help="the patient's id on the FHIR server")]
Prefetch = Annotated[
    bool,
    typer.Option("--prefetch", help="fill the prefetch here, as an EHR would", metavar=FLAG),
]
AsJson = Annotated[
    bool, typer.Option("--json", help="print the raw CDS Hooks response", metavar=FLAG)
]
Sign = Annotated[
    bool,
    typer.Option(
        "--sign",
        help="sign the call with the development key of `cds-service dev-token` "
        "(for a service with JWT verification on; never in production)",
        metavar=FLAG,
    ),
]
Orders = Annotated[
    list[str],
    typer.Option(
        "--order",
        help=f"a draft order to send (repeatable): {', '.join(sandbox.ORDERS)}",
        metavar="KIND",
    ),
]


@fire_cli.command("patient-view")
def fire_patient_view(
    fhir_server: FhirServer,
    patient: Patient,
    service_url: ServiceUrl = None,
    prefetch: Prefetch = False,
    as_json: AsJson = False,
    sign: Sign = False,
    dev_key_folder: DevKeyFolder = dev_issuer.DEFAULT_FOLDER,
    token: Token = None,
) -> None:
    """Build the patient-view request an EHR would send, post it, and show the cards."""
    _fire_and_show(
        "patient-view", (), fhir_server, patient, service_url, prefetch, as_json, sign,
        dev_key_folder, token,
    )  # fmt: skip


def _order_command(hook: str, doc: str) -> None:
    """``fire order-select`` and ``fire order-sign``: the same options, one hook each."""

    def command(
        fhir_server: FhirServer,
        patient: Patient,
        order: Orders,
        service_url: ServiceUrl = None,
        prefetch: Prefetch = False,
        as_json: AsJson = False,
        sign: Sign = False,
        dev_key_folder: DevKeyFolder = dev_issuer.DEFAULT_FOLDER,
        token: Token = None,
    ) -> None:
        _fire_and_show(
            hook, order, fhir_server, patient, service_url, prefetch, as_json, sign,
            dev_key_folder, token,
        )  # fmt: skip

    command.__doc__ = doc
    fire_cli.command(hook)(command)


_order_command(
    "order-select",
    "Build the order-select request an EHR sends while orders are chosen (the --order drafts, "
    "all selected), post it, and show the cards.",
)
_order_command(
    "order-sign",
    "Build the order-sign request an EHR sends before the --order drafts are signed, post it, "
    "and show the cards.",
)


def _fire_and_show(
    hook: str,
    orders: list[str] | tuple[()],
    fhir_server: str,
    patient: str,
    service_url: str | None,
    prefetch: bool,
    as_json: bool,
    sign: bool,
    dev_key_folder: Path,
    token: str | None,
) -> None:
    unknown = [o for o in orders if o not in sandbox.ORDERS]
    if unknown:
        _fail(f"--order {unknown[0]}: not one of {', '.join(sandbox.ORDERS)}.", 2)
    fhir_server = _checked_url(fhir_server, "--fhir-server")
    bearer = None
    if service_url is not None:
        service_url = _checked_url(service_url, "--service-url")
        if sign:
            bearer = _dev_token(
                dev_key_folder, service_url.rstrip("/") + sandbox.service_path(hook)
            )
    elif sign:
        _fail("--sign needs --service-url: the in-process service verifies no token.", 2)
    hint = (
        "The service did not accept the development token: start it with "
        f"CDS_TRUSTED_ISSUERS_FILE={(dev_key_folder / 'issuers.toml').resolve()} and "
        f"CDS_PUBLIC_BASE_URL={(service_url or '').rstrip('/')} (its log names the reason)."
        if bearer
        else None
    )
    body = sandbox.hook_request(fhir_server, patient, token, hook=hook, orders=orders)
    result = _run(_fire(body, fhir_server, patient, service_url, prefetch, token, bearer, hint))
    if as_json:
        out.print_json(json.dumps(result))
        return
    try:
        show_cards(result)
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        _fail(f"The service's answer is not a CDS Hooks response ({type(exc).__name__}).", 1)


async def _fire(
    body: dict[str, Any],
    fhir_server: str,
    patient: str,
    service_url: str | None,
    prefetch: bool,
    token: str | None,
    bearer: str | None = None,
    unauthorized_hint: str | None = None,
) -> Any:
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
                templates = await sandbox.discovery(client, sandbox.service_ids()[body["hook"]])
                body["prefetch"] = await sandbox.prefetch(
                    http, fhir_server, templates, patient, token
                )
            return await sandbox.fire(client, body, bearer, unauthorized_hint)


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
        # The summary is the first line of the panel, wrapped there; a panel title is cut to
        # one line.
        parts.insert(0, Text(card["summary"], style="bold"))
        title = f"[{style}]{escape(card.get('indicator', 'info').upper())}[/{style}]"
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
        _fail(str(exc), exc.exit_code)
    except (TypeError, KeyError, AttributeError) as exc:  # an answer of an unexpected shape
        _fail(f"The answer is not what CDS Hooks or FHIR say it is ({type(exc).__name__}).", 1)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        _fail(f"{type(exc).__name__}: {exc}", 1)


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[bold red]Error:[/bold red] {escape(message)}")
    raise typer.Exit(code)


def _checked_url(url: str, what: str) -> str:
    if not valid_base_url(url):
        _fail(
            f"{what} {url!r} is not an absolute http(s) URL (e.g. https://hapi.fhir.org/baseR4).", 2
        )
    return url


@cli.command("dev-token")
def dev_token(
    service_url: Annotated[
        str,
        typer.Option(
            "--service-url", help="the service's public base URL (its CDS_PUBLIC_BASE_URL)"
        ),
    ] = "http://127.0.0.1:8080",
    feedback: Annotated[
        bool,
        typer.Option("--feedback", help="a token for the feedback endpoint", metavar=FLAG),
    ] = False,
    hook: Annotated[
        str,
        typer.Option("--hook", help=f"the service of this hook: {', '.join(HOOKS)}"),
    ] = "patient-view",
    folder: DevKeyFolder = dev_issuer.DEFAULT_FOLDER,
) -> None:
    """DEVELOPMENT ONLY: print a JWT for one call, signed by a local development key (made on
    first use with the issuers file that trusts it), and how to start a service that trusts it."""
    service_url = _checked_url(service_url, "--service-url").rstrip("/")
    if hook not in HOOKS:
        _fail(f"--hook {hook}: not one of {', '.join(HOOKS)}.", 2)
    path = sandbox.service_path(hook) + ("/feedback" if feedback else "")
    token = _dev_token(folder, service_url + path)
    issuer = dev_issuer.DevIssuer(folder)
    err.print(
        "[bold red]DEVELOPMENT ONLY, NOT FOR PRODUCTION:[/bold red] signed by the key in "
        f"{escape(str(issuer.key_file))} (issuer {dev_issuer.DEV_ISSUER}), for one call to "
        f"{escape(service_url + path)} within 5 minutes. A service trusts it only when started "
        "with:\n"
        f"  CDS_REQUIRE_JWT=true CDS_PUBLIC_BASE_URL={escape(service_url)} "
        f"CDS_TRUSTED_ISSUERS_FILE={escape(str(issuer.issuers_file.resolve()))} make run"
    )
    print(token)  # alone on standard output: TOKEN=$(cds-service dev-token)


def _dev_token(folder: Path, audience: str) -> str:
    """A development token for ``audience``, or one line saying what is wrong with ``folder``."""
    try:
        return dev_issuer.ensure(folder).sign(audience, datetime.now(UTC))
    except (OSError, ValueError) as exc:
        _fail(
            f"cannot use the development key in {folder}: {exc} (delete the folder to start over)",
            2,
        )


def _show_version(value: bool) -> None:
    if value:
        print(f"cds-service {version('sacral-bsi-cds')} (card content {load_content().version})")
        raise typer.Exit


@cli.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", help="print the version and exit", callback=_show_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Sacral BSI CDS Hooks service."""


# Flags that users also write with a value, as the help's "<bool>" once suggested.
_FLAGS = frozenset({"--prefetch", "--json", "--sign", "--feedback"})
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def normalise_flags(argv: list[str]) -> list[str]:
    """``--prefetch true`` / ``--prefetch=false`` read as the flag given or left out."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        name, eq, value = word.partition("=")
        following = argv[i + 1].lower() if i + 1 < len(argv) else None
        if name in _FLAGS and eq and value.lower() in _TRUE | _FALSE:
            out.extend([name] if value.lower() in _TRUE else [])
        elif word in _FLAGS and following in _TRUE | _FALSE:
            out.extend([word] if following in _TRUE else [])
            i += 1
        else:
            out.append(word)
        i += 1
    return out


def main() -> None:
    cli(args=normalise_flags(sys.argv[1:]), prog_name="cds-service")
