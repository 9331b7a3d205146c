"""What a FHIR server may send (issue 9, item 7): each answer at most
CDS_FHIR_MAX_RESPONSE_BYTES, all answers of one hook call at most CDS_FHIR_MAX_TOTAL_BYTES, counted
after decompression. Past a cap the service stops reading and answers 412 saying which cap."""

from __future__ import annotations

import contextlib
import gzip
import json
import threading
import tracemalloc
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import respx

from tests import cases
from tests.builders import hook_request, prefetch_for
from tests.conftest import SERVICE_URL, ClientFactory

pytestmark = pytest.mark.anyio
FHIR = "http://fhir.test/r4"
CAP = 200_000


def padded_searchset(size: int) -> bytes:
    """A valid searchset of about ``size`` bytes (one Observation with a long note)."""
    observation = {
        "resourceType": "Observation",
        "id": "big",
        "status": "final",
        "code": {"text": "Note"},
        "subject": {"reference": "Patient/maya"},
        "valueString": "x" * size,
    }
    return json.dumps(
        {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": observation}]}
    ).encode()


def maya_without(key: str) -> dict[str, Any]:
    body = hook_request(cases.maya_before_mri(), pid="maya", fhir_server=FHIR)
    del body["prefetch"][key]
    return body


def issue(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 412, response.text
    first: dict[str, Any] = response.json()["issue"][0]
    return first


async def test_fhir_answer_over_the_response_cap_is_412_naming_the_setting(
    client_at: ClientFactory,
) -> None:
    with respx.mock() as mock:
        mock.get(url__startswith=f"{FHIR}/Observation").mock(
            return_value=httpx.Response(200, content=padded_searchset(1_000_000))
        )
        response = await client_at(cases.MAYA_SUSPECT_DAY, fhir_max_response_bytes=CAP).post(
            SERVICE_URL, json=maya_without("observations")
        )
    found = issue(response)
    assert "CDS_FHIR_MAX_RESPONSE_BYTES" in found["details"]["text"]
    assert found["diagnostics"] == "fhir_response_too_large"


async def test_fhir_answer_streamed_without_length_is_not_read_past_the_cap(
    client_at: ClientFactory,
) -> None:
    """No Content-Length (chunked): reading stops at the cap, the rest is never pulled."""
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        yield b'{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"x":"'
        for _ in range(10_000):  # 640 MB if read to the end
            pulled += 1
            yield b"x" * 65_536

    with respx.mock() as mock:
        mock.get(url__startswith=f"{FHIR}/Observation").mock(
            return_value=httpx.Response(200, content=endless())
        )
        response = await client_at(cases.MAYA_SUSPECT_DAY, fhir_max_response_bytes=CAP).post(
            SERVICE_URL, json=maya_without("observations")
        )
    assert "CDS_FHIR_MAX_RESPONSE_BYTES" in issue(response)["details"]["text"]
    assert pulled <= CAP // 65_536 + 2


async def test_fhir_gzip_bomb_is_counted_at_its_real_size(client_at: ClientFactory) -> None:
    bomb = gzip.compress(padded_searchset(5_000_000))  # about 5 KB on the wire
    assert len(bomb) < 50_000
    with respx.mock() as mock:
        mock.get(url__startswith=f"{FHIR}/Observation").mock(
            return_value=httpx.Response(200, content=bomb, headers={"Content-Encoding": "gzip"})
        )
        response = await client_at(cases.MAYA_SUSPECT_DAY, fhir_max_response_bytes=CAP).post(
            SERVICE_URL, json=maya_without("observations")
        )
    assert "CDS_FHIR_MAX_RESPONSE_BYTES" in issue(response)["details"]["text"]


async def test_fhir_answers_together_over_the_total_cap_are_412(client_at: ClientFactory) -> None:
    """Each answer under the per-answer cap, all of them together over the call's cap."""
    full = prefetch_for(cases.maya_before_mri(), "maya")

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/Patient/maya"):
            return httpx.Response(200, json=full["patient"])
        return httpx.Response(200, content=padded_searchset(150_000))

    with respx.mock() as mock:
        mock.get(url__startswith=FHIR).mock(side_effect=answer)
        response = await client_at(
            cases.MAYA_SUSPECT_DAY, fhir_max_response_bytes=CAP, fhir_max_total_bytes=400_000
        ).post(SERVICE_URL, json=hook_request(pid="maya", fhir_server=FHIR))
    assert "CDS_FHIR_MAX_TOTAL_BYTES" in issue(response)["details"]["text"]


async def test_fhir_answers_under_the_caps_are_read(client_at: ClientFactory) -> None:
    with respx.mock() as mock:
        mock.get(url__startswith=f"{FHIR}/Observation").mock(
            return_value=httpx.Response(200, content=padded_searchset(100_000))
        )
        response = await client_at(cases.MAYA_SUSPECT_DAY, fhir_max_response_bytes=CAP).post(
            SERVICE_URL, json=maya_without("observations")
        )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("headers", "content", "said"),
    [
        ({"content-encoding": "br"}, b"\x00" * 100, "encoding the service does not read"),
        ({"content-encoding": "gzip"}, b"\x1f\x8b not really gzip", "does not decompress"),
        (
            {"content-type": "application/fhir+json; charset=utf-7"},
            b'{"resourceType": "Bundle", "type": "searchset", "id": "+2AA-"}',
            "not readable in the charset it declares",
        ),
    ],
)
async def test_fhir_answer_that_does_not_decode_is_412_not_500(
    client_at: ClientFactory, headers: dict[str, str], content: bytes, said: str
) -> None:
    with respx.mock() as mock:
        mock.get(url__startswith=f"{FHIR}/Observation").mock(
            # As a stream: httpx would decode a body given whole already here, in the test.
            return_value=httpx.Response(200, headers=headers, stream=httpx.ByteStream(content))
        )
        response = await client_at(cases.MAYA_SUSPECT_DAY).post(
            SERVICE_URL, json=maya_without("observations")
        )
    found = issue(response)
    assert found["diagnostics"] == "fhir_bad_response"
    # (respx hands the body through httpx, which inflates it first; a real server's gzip is
    # inflated by the service itself, see the next test.)
    assert said in found["details"]["text"] or "does not decode" in found["details"]["text"]


async def test_fhir_gzip_bomb_is_inflated_a_bounded_piece_at_a_time(
    client_at: ClientFactory,
) -> None:
    """200 MB of zeros in 200 KB of gzip, from a real server on loopback (a mock would inflate
    it in the test): stopped at the cap, and never more than a bounded piece inflated at once.
    Inflating whole network reads, as httpx does, would hold about 64 MB at once."""
    bomb = gzip.compress(b"\x00" * 200_000_000, compresslevel=9)

    class Bomb(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/fhir+json")
            self.send_header("content-encoding", "gzip")
            self.send_header("content-length", str(len(bomb)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(bomb)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Bomb)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fhir = f"http://127.0.0.1:{server.server_address[1]}/fhir"
    body = hook_request(cases.maya_before_mri(), pid="maya", fhir_server=fhir)
    del body["prefetch"]["observations"]
    client = client_at(cases.MAYA_SUSPECT_DAY, fhir_max_response_bytes=CAP)
    tracemalloc.start()
    try:
        response = await client.post(SERVICE_URL, json=body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        server.shutdown()
    assert "CDS_FHIR_MAX_RESPONSE_BYTES" in issue(response)["details"]["text"]
    assert peak < 20_000_000, f"{peak:,} bytes at once"
