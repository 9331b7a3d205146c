"""HTTP contract, in-process: discovery, the service call, every error path, CORS."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from cds_service.main import StartupError, create_app
from cds_service.platform import wire
from cds_service.services.sacral_bsi.content import load_content
from tests import cases
from tests.builders import hook_request, patient, searchset
from tests.conftest import SERVICE_URL, ClientFactory, at, settings_for_tests
from tests.response_rules import assert_spec_response

pytestmark = pytest.mark.anyio


async def test_api_discovery_lists_the_service_with_spec_prefetch_tokens(
    client_at: ClientFactory,
) -> None:
    response = await client_at().get("/cds-services")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    services = response.json()["services"]
    assert [(s["id"], s["hook"]) for s in services] == [
        ("sacral-bsi", "patient-view"),
        ("sacral-bsi-order-select", "order-select"),
        ("sacral-bsi-order-sign", "order-sign"),
    ]
    # The order services read the same record: an EHR can share one prefetch.
    assert services[1]["prefetch"] == services[0]["prefetch"] == services[2]["prefetch"]
    assert all(s["title"] and s["description"] for s in services)
    service = services[0]
    assert service["hook"] == "patient-view"
    assert service["title"]
    assert service["description"]
    prefetch = service["prefetch"]
    assert set(prefetch) == {
        "patient",
        "conditions",
        "observations",
        "activityNotes",
        "diagnosticReports",
        "carePlans",
        "serviceRequests",
    }
    assert prefetch["patient"] == "Patient/{{context.patientId}}"
    for template in prefetch.values():
        tokens = {t.split("}}")[0] for t in template.split("{{")[1:]}
        assert tokens == {"context.patientId"}, template
    assert prefetch["conditions"].startswith("Condition?patient=")
    assert "73985-4" in prefetch["observations"]
    assert "39156-5" in prefetch["observations"]
    assert prefetch["diagnosticReports"].startswith("DiagnosticReport?patient=")
    assert prefetch["carePlans"].startswith("CarePlan?patient=")
    assert prefetch["serviceRequests"] == (
        "ServiceRequest?patient={{context.patientId}}&status=draft,active,on-hold&_count=100"
    )


async def test_api_suspect_card_for_maya(client_at: ClientFactory) -> None:
    body = hook_request(cases.maya_before_mri(), pid="maya")
    response = await client_at(cases.MAYA_SUSPECT_DAY).post(SERVICE_URL, json=body)
    assert response.status_code == 200
    payload = response.json()
    assert_spec_response(payload)
    (card,) = payload["cards"]
    assert "sacral" in card["summary"]
    assert "stress" in card["summary"]
    assert card["indicator"] == "warning"
    assert card["selectionBehavior"] == "at-most-one"


async def test_api_no_card_is_an_empty_list(client_at: ClientFactory) -> None:
    response = await client_at().post(SERVICE_URL, json=hook_request(cases.daniel(), pid="daniel"))
    assert response.status_code == 200
    assert response.json() == {"cards": []}


# ---------------------------------------------------------------------------- client errors
async def test_api_malformed_json_is_400_operation_outcome(client_at: ClientFactory) -> None:
    response = await client_at().post(
        SERVICE_URL, content=b'{"hook": patient-view', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "invalid"
    assert "not valid JSON" in body["issue"][0]["details"]["text"]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.update(hook="order-select"), "hook"),
        (lambda b: b["context"].pop("patientId"), "context.patientId"),
        (lambda b: b["context"].update(patientId=""), "context.patientId"),
        (lambda b: b.pop("hookInstance"), "hookInstance"),
        (lambda b: b.update(hookInstance="not-a-uuid"), "hookInstance"),
        (lambda b: b.update(hookInstance=""), "hookInstance"),
        (
            lambda b: b.update(hookInstance='d1577c69-dfbe-44ad-ba6d-3e05e953b2ea\n{"level":"x"}'),
            "hookInstance",
        ),
        (lambda b: b.update(hookInstance="d1577c69dfbe44adba6d3e05e953b2ea"), "hookInstance"),
        # Python's $ matches before a final newline: the patterns must end at the very end.
        (lambda b: b.update(hookInstance="d1577c69-dfbe-44ad-ba6d-3e05e953b2ea\n"), "hookInstance"),
        (lambda b: b["context"].update(patientId="daniel\n"), "context.patientId"),
        (lambda b: b["context"].update(encounterId="e1\n"), "context.encounterId"),
        (lambda b: b.pop("hook"), "hook"),
        (lambda b: b.pop("context"), "context"),
        (lambda b: b.update(context="p1"), "context"),
        (lambda b: b.update(fhirServer="not a url"), "fhirServer"),
        (lambda b: b.update(prefetch=[1, 2]), "prefetch"),
        (lambda b: b["prefetch"].update(conditions="hello"), "prefetch.conditions"),
        (lambda b: b["prefetch"].update(conditions={"entry": []}), "prefetch.conditions"),
        (
            lambda b: b.update(fhirAuthorization={"access_token": "t", "token_type": "Bearer"}),
            "fhirServer",
        ),
    ],
)
async def test_api_request_not_matching_the_spec_is_400_naming_the_field(
    client_at: ClientFactory, mutate: Any, field: str
) -> None:
    body = hook_request(cases.daniel(), pid="daniel")
    mutate(body)
    response = await client_at().post(SERVICE_URL, json=body)
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == [field]
    assert issue["details"]["text"]


async def test_api_json_that_is_not_an_object_is_400(client_at: ClientFactory) -> None:
    response = await client_at().post(SERVICE_URL, content=b"[1,2,3]")
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_api_unknown_service_is_404(client_at: ClientFactory) -> None:
    response = await client_at().post(
        "/cds-services/nope", json=hook_request(cases.daniel(), pid="daniel")
    )
    assert response.status_code == 404
    assert response.json()["issue"][0]["code"] == "not-found"


async def test_api_unknown_path_is_404_json(client_at: ClientFactory) -> None:
    response = await client_at().get("/nothing-here")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", SERVICE_URL + "/"), ("GET", "/cds-services/"), ("POST", SERVICE_URL + "/feedback/")],
)
async def test_api_trailing_slash_is_404_never_a_redirect(
    client_at: ClientFactory, method: str, path: str
) -> None:
    # A 307 would drop a POST's body and send the EHR to an http:// URL built from Host.
    response = await client_at().request(
        method,
        path,
        json=hook_request(cases.daniel(), pid="daniel"),
        headers={"Host": "attacker.example"},
    )
    assert response.status_code == 404
    assert "location" not in response.headers
    text = response.json()["issue"][0]["details"]["text"]
    assert path.rstrip("/") in text


async def test_api_get_on_service_is_405_json(client_at: ClientFactory) -> None:
    response = await client_at().get(SERVICE_URL)
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_api_body_over_limit_is_413(client_at: ClientFactory) -> None:
    body = json.dumps(hook_request(cases.daniel(), pid="daniel")).encode()
    response = await client_at(max_body_bytes=1024).post(SERVICE_URL, content=body + b" " * 2048)
    assert response.status_code == 413
    assert response.json()["issue"][0]["code"] == "too-costly"


async def test_api_deeply_nested_json_is_a_client_error_not_a_crash(
    client_at: ClientFactory,
) -> None:
    deep = (
        b'{"hook":"patient-view","hookInstance":"d1577c69-dfbe-44ad-ba6d-3e05e953b2ea","context":{"patientId":"p"},"prefetch":{"x":'
        + b"[" * 5000
        + b"]" * 5000
        + b"}}"
    )
    response = await client_at().post(SERVICE_URL, content=deep)
    assert response.status_code in (400, 412)
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_api_unknown_request_fields_are_ignored(client_at: ClientFactory) -> None:
    body = hook_request(cases.maya_before_mri(), pid="maya")
    body["extension"] = {"com.example.timestamp": "2017-11-27T22:13:25Z"}
    body["context"]["extension"] = {"x": 1}
    body["somethingNew"] = [1]
    response = await client_at(cases.MAYA_SUSPECT_DAY).post(SERVICE_URL, json=body)
    assert response.status_code == 200
    assert len(response.json()["cards"]) == 1


# ---------------------------------------------------------------------------- CORS
async def test_api_cors_preflight_allows_authorization_and_content_type(
    client_at: ClientFactory,
) -> None:
    response = await client_at().options(
        SERVICE_URL,
        headers={
            "Origin": "https://sandbox.cds-hooks.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed
    assert "content-type" in allowed
    assert response.headers["access-control-allow-origin"] in ("*", "https://sandbox.cds-hooks.org")
    assert "POST" in response.headers["access-control-allow-methods"]


async def test_api_cors_origins_are_a_setting(client_at: ClientFactory) -> None:
    client = client_at(cors_allow_origins=("https://ehr.example",))
    headers = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    allowed = await client.options(
        SERVICE_URL, headers={"Origin": "https://ehr.example", **headers}
    )
    refused = await client.options(
        SERVICE_URL, headers={"Origin": "https://evil.example", **headers}
    )
    assert allowed.headers["access-control-allow-origin"] == "https://ehr.example"
    assert refused.status_code == 400
    simple = await client.get("/cds-services", headers={"Origin": "https://ehr.example"})
    assert simple.headers["access-control-allow-origin"] == "https://ehr.example"


# ---------------------------------------------------------------------------- health
async def test_api_health_endpoints(client_at: ClientFactory) -> None:
    client = client_at()
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200


async def test_api_patient_prefetch_may_be_a_bundle(client_at: ClientFactory) -> None:
    body = hook_request(cases.maya_before_mri(), pid="maya")
    body["prefetch"]["patient"] = searchset([patient("maya", "female", "2005-03-01")])
    response = await client_at(cases.MAYA_SUSPECT_DAY).post(SERVICE_URL, json=body)
    assert response.status_code == 200
    assert len(response.json()["cards"]) == 1


async def test_api_hook_instance_not_a_uuid_is_400_in_words(client_at: ClientFactory) -> None:
    body = hook_request(cases.daniel(), pid="daniel")
    body["hookInstance"] = "1234"
    response = await client_at().post(SERVICE_URL, json=body)
    assert response.status_code == 400
    assert response.json()["issue"][0]["details"]["text"].startswith("hookInstance must be a UUID")


Receive = Callable[[], Awaitable[dict[str, Any]]]


Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def raw_hook_call(
    app: Any,
    receive: Receive,
    refuse: Send | None = None,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> list[MutableMapping[str, Any]]:
    """POST to the service straight through ASGI, the body as ``receive`` gives it (a
    disconnect, a stall): what the app sent back (``refuse``: the server's send, failing;
    ``headers``: more request headers)."""
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)
        if refuse is not None:
            await refuse(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": SERVICE_URL, "raw_path": SERVICE_URL.encode(),
        "root_path": "", "query_string": b"", "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 5000),
        "headers": [(b"content-type", b"application/json"), *headers],
    }  # fmt: skip
    with anyio.fail_after(10):
        await app(scope, receive, send)
    return sent


async def test_api_client_gone_mid_body_is_its_fault_not_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A caller that disconnects mid-body (or breaks the protocol there) is logged as such, at
    warning level, not as a 500 internal_error an operator would page on."""
    messages: Iterator[dict[str, Any]] = iter(
        [
            {"type": "http.request", "body": b'{"hook": "patient-view", ', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )

    async def receive() -> dict[str, Any]:
        return next(messages)

    with caplog.at_level(logging.INFO, logger="cds_service"):
        sent = await raw_hook_call(create_app(settings_for_tests()), receive)
    (call,) = [r for r in caplog.records if r.getMessage() == "hook_call"]
    assert call.levelno == logging.WARNING
    assert call.fields["status"] == 400  # type: ignore[attr-defined]
    assert call.fields["outcome"] == "client_disconnected"  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert sent[0]["status"] == 400


async def test_api_body_that_never_finishes_is_408_not_held() -> None:
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b'{"hook": ', "more_body": True}
        await anyio.sleep(3600)  # the rest never comes
        raise AssertionError

    app = create_app(settings_for_tests(request_read_timeout_seconds=0.2))
    sent = await raw_hook_call(app, receive)
    assert sent[0]["status"] == 408
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert body["issue"][0]["diagnostics"] == "request_timeout"


def _chunked(body: bytes, sizes: list[int]) -> Callable[[], Awaitable[dict[str, Any]]]:
    """``receive`` giving ``body`` in chunks of ``sizes`` bytes (the rest in the last one), then
    an empty last message, as servers send a chunked upload."""
    cuts = [0]
    for size in sizes:
        cuts.append(min(cuts[-1] + size, len(body)))
    parts = [body[a:b] for a, b in zip(cuts, [*cuts[1:], len(body)], strict=True)]
    messages = iter(
        [
            *({"type": "http.request", "body": part, "more_body": True} for part in parts),
            {"type": "http.request", "body": b"", "more_body": False},
        ]
    )

    async def receive() -> dict[str, Any]:
        return next(messages)

    return receive


async def test_api_body_in_chunks_is_read_whole() -> None:
    """A body sent in several ASGI messages (chunked transfer), empty ones included, is the same
    request as one sent at once: the same card."""
    body = json.dumps(hook_request(cases.maya_before_mri(), pid="maya")).encode()
    app = create_app(settings_for_tests(), clock=at(cases.MAYA_SUSPECT_DAY))

    async def whole() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    answers = []
    for receive in (whole, _chunked(body, [1, 0, 100, 7])):
        sent = await raw_hook_call(app, receive)
        assert sent[0]["status"] == 200
        answers.append(json.loads(b"".join(m.get("body", b"") for m in sent[1:])))
    cards = [[card["summary"] for card in answer["cards"]] for answer in answers]
    assert cards[0] == cards[1]
    assert len(cards[0]) == 1


async def test_api_body_messages_read_as_starlette_reads_them() -> None:
    """Another message type than ``http.request`` and ``http.disconnect`` is passed over, and a
    message whose body is null adds nothing: the request is read whole, as Starlette's own
    ``request.stream()`` reads it."""
    body = json.dumps(hook_request(cases.maya_before_mri(), pid="maya")).encode()
    messages: Iterator[dict[str, Any]] = iter(
        [
            {"type": "http.foo"},
            {"type": "http.request", "body": None, "more_body": True},
            {"type": "http.request", "body": body[:10], "more_body": True},
            {"type": "http.request", "more_body": True},
            {"type": "websocket.receive"},
            {"type": "http.request", "body": body[10:]},
        ]
    )

    async def receive() -> dict[str, Any]:
        return next(messages)

    app = create_app(settings_for_tests(), clock=at(cases.MAYA_SUSPECT_DAY))
    sent = await raw_hook_call(app, receive)
    assert sent[0]["status"] == 200
    assert len(json.loads(b"".join(m.get("body", b"") for m in sent[1:]))["cards"]) == 1


@pytest.mark.parametrize(
    "length", [b"\xb2", b"\xd9\xa3", b"-1", b"1e3", b" 12", b"0" * 5000 + b"12", b"000"]
)
async def test_api_a_content_length_that_is_no_number_is_not_a_500(length: bytes) -> None:
    """A Content-Length of other digits ("²", Arabic-Indic), no number at all, or a small
    number written with thousands of zeros: the HTTP servers refuse it before the app; an ASGI
    server that passes it on gets the body read as sent, not a 500."""
    body = json.dumps(hook_request(cases.maya_before_mri(), pid="maya")).encode()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    app = create_app(settings_for_tests(), clock=at(cases.MAYA_SUSPECT_DAY))
    sent = await raw_hook_call(app, receive, headers=((b"content-length", length),))
    assert sent[0]["status"] == 200


@pytest.mark.parametrize("length", [b"9" * 5000, b"1" + b"0" * 19, b"0" * 30 + b"1025"])
async def test_api_a_content_length_over_the_limit_is_413_however_it_is_written(
    length: bytes,
) -> None:
    """Thousands of digits (which int() refuses), a number past 64 bits, leading zeros: each is
    over the 1,024-byte limit, a 413, and the body is not read."""

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body is read")

    app = create_app(settings_for_tests(max_body_bytes=1024))
    sent = await raw_hook_call(app, receive, headers=((b"content-length", length),))
    assert sent[0]["status"] == 413


async def test_api_chunked_body_over_limit_is_413_without_a_length() -> None:
    """No Content-Length to refuse early: the chunks are counted as they come."""
    sent = await raw_hook_call(
        create_app(settings_for_tests(max_body_bytes=1024)), _chunked(b"{" + b" " * 2000, [600])
    )
    assert sent[0]["status"] == 413


async def test_api_answer_the_server_cannot_take_is_a_warning_not_a_bug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When the server refuses the answer (the client broke the protocol mid-body and has been
    answered 400 already), that is logged as a warning, not as an unhandled error."""
    body = json.dumps(hook_request(cases.daniel(), pid="daniel")).encode()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def refuse(message: MutableMapping[str, Any]) -> None:
        raise RuntimeError("the protocol is in an error state")

    with caplog.at_level(logging.INFO, logger="cds_service"):
        await raw_hook_call(create_app(settings_for_tests()), receive, refuse)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "response_not_delivered"
    ]


@pytest.mark.parametrize("what", ["a file", "latin-1"])
def test_api_content_that_cannot_be_read_stops_start_in_one_line(tmp_path: Path, what: str) -> None:
    if what == "a file":
        content_dir = tmp_path / "not-a-folder"
        content_dir.write_text("x")
    else:
        content_dir = tmp_path / "cards"
        shutil.copytree(load_content().directory.parent, content_dir)
        toml = content_dir / "sacral-bsi" / "content.toml"
        toml.write_bytes(b"# caf\xe9\n" + toml.read_bytes())
    with pytest.raises(StartupError, match=r"^CDS_CONTENT_DIR: ") as refused:
        create_app(settings_for_tests(content_dir=content_dir))
    assert "\n" not in str(refused.value)


async def test_api_openapi_request_schemas_are_generated_from_the_wire_models(
    client_at: ClientFactory,
) -> None:
    """One source: the OpenAPI request bodies are the msgspec wire models' schemas, one request
    type per hook told apart by ``hook``; a change to a model changes the schema."""
    spec = (await client_at().get("/openapi.json")).json()
    body = spec["paths"]["/cds-services/{service_id}"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    components = spec["components"]["schemas"]
    refs = [option["$ref"].rsplit("/", 1)[1] for option in schema["anyOf"]]
    assert refs == ["PatientViewRequest", "OrderSelectRequest", "OrderSignRequest"]
    assert schema["discriminator"]["propertyName"] == "hook"
    for name, hook in zip(refs, wire.HOOKS, strict=True):
        model = components[name]
        assert model["properties"]["hook"] == {"enum": [hook]}
        assert set(model["required"]) == {"hook", "hookInstance", "context"}
        pattern = model["properties"]["hookInstance"]["pattern"]
        assert pattern == msgspec.inspect.type_info(wire.HookInstance).pattern  # type: ignore[attr-defined]
    select = components["OrderSelectContext"]
    assert set(select["required"]) == {"patientId", "selections", "draftOrders"}
    assert set(components["OrderSignContext"]["required"]) == {"patientId", "draftOrders"}
    assert components["PatientViewContext"]["required"] == ["patientId"]
    feedback = spec["paths"]["/cds-services/{service_id}/feedback"]["post"]["requestBody"]
    assert feedback["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/FeedbackRequest"
    }
