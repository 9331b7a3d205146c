"""Property-based fuzzing of the service endpoint: random and mutated requests never produce a
500 or a response that breaks the CDS Hooks rules. Hypothesis drives the mutations; Schemathesis
generates requests from the service's own OpenAPI document. No request leaves the machine: any
FHIR server a fuzzed request names is answered by respx."""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import httpx
import respx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from starlette.testclient import TestClient

from cds_service.main import create_app
from tests import cases
from tests.builders import hook_request
from tests.conftest import SERVICE_URL, record_figure, settings_for_tests
from tests.response_rules import assert_operation_outcome, assert_spec_response

APP = create_app(settings_for_tests())
CLIENT = TestClient(APP, raise_server_exceptions=False)
EXAMPLES = 300
# Byte-level mutations: `make test` runs this many; `make fuzz` runs 10,000 (FUZZ_EXAMPLES).
BYTE_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "400"))
ALLOWED = {200, 400, 404, 405, 412, 413}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)

VALID = hook_request(cases.maya_before_mri(), pid="maya", fhir_server="http://fhir.fuzz/r4")
PATHS: list[tuple[Any, ...]] = [
    ("hook",), ("hookInstance",), ("context",), ("context", "patientId"), ("context", "userId"),
    ("context", "encounterId"), ("fhirServer",), ("fhirAuthorization",), ("fhirAuthorization", "scope"),
    ("prefetch",), ("prefetch", "patient"), ("prefetch", "conditions"), ("prefetch", "observations"),
    ("prefetch", "conditions", "entry"), ("prefetch", "conditions", "entry", 0),
    ("prefetch", "conditions", "entry", 0, "resource"), ("prefetch", "conditions", "entry", 0, "resource", "code"),
    ("prefetch", "conditions", "entry", 0, "resource", "onsetDateTime"),
    ("prefetch", "conditions", "entry", 0, "resource", "bodySite"),
    ("prefetch", "conditions", "entry", 0, "resource", "clinicalStatus"),
    ("prefetch", "conditions", "entry", 0, "resource", "note"),
    ("prefetch", "observations", "entry", 0, "resource", "valueQuantity"),
    ("prefetch", "observations", "entry", 0, "resource", "valueCodeableConcept"),
    ("prefetch", "observations", "entry", 0, "resource", "effectiveDateTime"),
    ("prefetch", "diagnosticReports"), ("prefetch", "carePlans"), ("prefetch", "conditions", "link"),
    ("prefetch", "patient", "birthDate"), ("prefetch", "patient", "resourceType"),
]  # fmt: skip


@st.composite
def mutated_requests(draw: st.DrawFn) -> dict[str, Any]:
    body = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(PATHS))
        parent: Any = body
        for step in path[:-1]:
            try:
                parent = parent[step]
            except (KeyError, IndexError, TypeError):
                break
        else:
            if isinstance(parent, (dict, list)):
                try:
                    if draw(st.booleans()) and isinstance(parent, dict):
                        parent.pop(path[-1], None)
                    else:
                        parent[path[-1]] = draw(json_values)
                except (IndexError, TypeError):
                    pass
    return body


def check(response: httpx.Response) -> None:
    assert response.status_code in ALLOWED, (response.status_code, response.text[:500])
    body = response.json()
    if response.status_code == 200:
        assert_spec_response(body)
    else:
        assert_operation_outcome(body)


def fake_fhir_server(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        404,
        json={
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "not-found"}],
        },
    )


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=mutated_requests())
def test_fuzz_mutated_requests_never_break_the_service(body: dict[str, Any]) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.route().mock(side_effect=fake_fhir_server)
        check(CLIENT.post(SERVICE_URL, json=body))
    record_figure("fuzz: mutated hook requests")


@settings(max_examples=EXAMPLES, deadline=None)
@given(body=json_values)
def test_fuzz_random_json_is_a_clear_client_error(body: Any) -> None:
    response = CLIENT.post(SERVICE_URL, content=json.dumps(body))
    check(response)
    record_figure("fuzz: random JSON bodies")


@settings(max_examples=EXAMPLES // 3, deadline=None)
@given(body=st.binary(max_size=300))
def test_fuzz_random_bytes_are_a_clear_client_error(body: bytes) -> None:
    check(CLIENT.post(SERVICE_URL, content=body))
    record_figure("fuzz: random byte bodies")


SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP)


@SCHEMA.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_openapi_operations_never_answer_500(case: schemathesis.Case[Any]) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host__regex=r"^(?!localhost$).*").mock(side_effect=fake_fhir_server)
        mock.route().pass_through()
        response = case.call()
    case.validate_response(response, checks=[not_a_server_error])
    if case.operation.method.upper() == "POST" and response.status_code == 200 and response.content:
        assert_spec_response(response.json())
    record_figure("fuzz: schemathesis cases")


VALID_BYTES = json.dumps(VALID, ensure_ascii=False).encode()
FEEDBACK_BYTES = json.dumps(
    {
        "feedback": [
            {
                "card": "3b5b3e0c-0000-4000-8000-000000000000",
                "outcome": "overridden",
                "outcomeTimestamp": "2025-09-30T12:00:00Z",
                "overrideReason": {
                    "reason": {"code": "already-imaged", "system": "http://example.org"},
                    "userComment": "Déjà vu: MRI done last week",
                },
            }
        ]
    },
    ensure_ascii=False,
).encode()


@st.composite
def byte_mutations(draw: st.DrawFn, base: bytes) -> bytes:
    """``base`` with one to four byte edits: a byte replaced (often by one above 0x7f, which is
    not UTF-8 on its own), a Latin-1 or odd sequence inserted, a run deleted, or the body cut."""
    data = bytearray(base)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if not data:
            break
        at = draw(st.integers(min_value=0, max_value=len(data) - 1))
        edit = draw(st.sampled_from(["replace", "high", "insert", "delete", "cut"]))
        if edit == "replace":
            data[at] = draw(st.integers(min_value=0, max_value=255))
        elif edit == "high":
            data[at] = draw(st.integers(min_value=0x80, max_value=0xFF))
        elif edit == "insert":
            data[at:at] = draw(
                st.sampled_from([b"\xe9", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x00"])
                | st.binary(min_size=1, max_size=4)
            )
        elif edit == "delete":
            del data[at : at + draw(st.integers(min_value=1, max_value=16))]
        else:
            del data[at:]
    return bytes(data)


@settings(max_examples=BYTE_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=byte_mutations(VALID_BYTES))
def test_fuzz_byte_mutations_of_a_valid_request_are_never_a_500(body: bytes) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.route().mock(side_effect=fake_fhir_server)
        check(CLIENT.post(SERVICE_URL, content=body))
    record_figure("fuzz: byte-mutated hook requests")


@settings(max_examples=BYTE_EXAMPLES // 2, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=byte_mutations(FEEDBACK_BYTES))
def test_fuzz_byte_mutations_of_valid_feedback_are_never_a_500(body: bytes) -> None:
    response = CLIENT.post(SERVICE_URL + "/feedback", content=body)
    assert response.status_code in ALLOWED, (response.status_code, response.text[:500])
    if response.status_code != 200:
        assert_operation_outcome(response.json())
    record_figure("fuzz: byte-mutated feedback requests")
