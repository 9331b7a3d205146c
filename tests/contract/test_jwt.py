"""Trusting CDS clients: the EHR's JWT on every service call. The tests make their own ES384 and
RS384 keys, serve JWKS with respx, and try a real token the public CDS Hooks Sandbox signed."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.requests import Request

from cds_service.api.auth import InsecureBindingError, _refuse_insecure_non_loopback
from cds_service.auth.issuers import IssuerConfigError, load_issuers
from cds_service.main import SettingsRefusedError, create_app
from tests import cases
from tests.builders import hook_request
from tests.conftest import SERVICE_URL, ClientFactory, record_figure, settings_for_tests, shared

pytestmark = pytest.mark.anyio
NOW = datetime(2025, 9, 30, 12, 0, tzinfo=UTC)
BASE = "http://cds.test"
AUDIENCE = BASE + SERVICE_URL
EHR = "https://ehr.example.org/fhir"
EHR_JWKS = "https://ehr.example.org/.well-known/jwks.json"
CERNER = "https://cds-hooks.cerner.com"
CERNER_JWKS = "https://authorization.cerner.com/jwk"
EPIC = "https://fhir.example-hospital.org/interconnect-fhir-oauth/api/FHIR/R4"
EPIC_KEYS = "https://fhir.example-hospital.org/interconnect-fhir-oauth/api/epic/2019/Security/Open/PublicKeys/530005/"


@dataclass
class Key:
    kid: str
    alg: str
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        algorithm = (
            jwt.algorithms.ECAlgorithm if self.alg.startswith("ES") else jwt.algorithms.RSAAlgorithm
        )
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        jwk.update(kid=self.kid, alg=self.alg, use="sig")
        return jwk

    def public_pem(self) -> bytes:
        pem: bytes = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem


def es(alg: str = "ES384") -> Key:
    curve = ec.SECP384R1() if alg == "ES384" else ec.SECP256R1()
    return Key(str(uuid.uuid4()), alg, ec.generate_private_key(curve))


def rs(alg: str = "RS384") -> Key:
    return Key(
        str(uuid.uuid4()), alg, rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )


EHR_KEY, EHR_ES256, CERNER_KEY, EPIC_KEY, PINNED_KEY = es(), es("ES256"), rs(), rs(), es()
ROGUE_KEY = es()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(NOW.timestamp())
    values: dict[str, Any] = {
        "iss": EHR,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def sign(
    payload: dict[str, Any],
    key: Key = EHR_KEY,
    *,
    jku: str | None = EHR_JWKS,
    kid: str | None = None,
    alg: str | None = None,
) -> str:
    headers: dict[str, Any] = {"kid": kid or key.kid, "typ": "JWT"}
    if jku:
        headers["jku"] = jku
    return jwt.encode(payload, key.private, algorithm=alg or key.alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any]) -> str:
    return f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{b64(json.dumps(payload).encode())}."


def hmac_with_public_key(payload: dict[str, Any]) -> str:
    header = {"alg": "HS256", "typ": "JWT", "kid": EHR_KEY.kid, "jku": EHR_JWKS}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(EHR_KEY.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def tampered(token: str) -> str:
    head, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["sub"] = "someone-else"
    return f"{head}.{b64(json.dumps(body).encode())}.{signature}"


@pytest.fixture
def issuers_file(tmp_path: Path) -> Path:
    pinned = tmp_path / "pinned-jwks.json"
    pinned.write_text(json.dumps({"keys": [PINNED_KEY.public_jwk()]}))
    path = tmp_path / "issuers.toml"
    path.write_text(
        f"""
[[issuer]]
iss = "{EHR}"
algorithms = ["ES384", "ES256"]
jku_allowlist = ["{EHR_JWKS}"]

[[issuer]]
iss = "{CERNER}"
jwks_url = "{CERNER_JWKS}"

[[issuer]]
iss = "{EPIC}"
algorithms = ["RS384"]
jku_allowlist = ["https://fhir.example-hospital.org/interconnect-fhir-oauth/api/epic/2019/Security/Open/PublicKeys/"]

[[issuer]]
iss = "https://pinned.example.org"
jwks_file = "pinned-jwks.json"
"""
    )
    return path


@pytest.fixture
def jwks_served() -> Any:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(EHR_JWKS).mock(
            return_value=httpx.Response(
                200, json={"keys": [EHR_KEY.public_jwk(), EHR_ES256.public_jwk()]}
            )
        )
        mock.get(CERNER_JWKS).mock(
            return_value=httpx.Response(200, json={"keys": [CERNER_KEY.public_jwk()]})
        )
        mock.get(url__startswith=EPIC_KEYS).mock(
            return_value=httpx.Response(200, json={"keys": [EPIC_KEY.public_jwk()]})
        )
        yield mock


Post = Callable[..., Any]


@pytest.fixture
def post(client_at: ClientFactory, issuers_file: Path, jwks_served: Any) -> Post:
    client = jwt_client(client_at, issuers_file, refetch_seconds=0)

    async def send(token: str | None, scheme: str = "Bearer") -> httpx.Response:
        headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
        return await client.post(
            SERVICE_URL, json=hook_request(cases.maya_before_mri(), pid="maya"), headers=headers
        )

    return send


GOOD: dict[str, Callable[[], str]] = {
    "ES384 with an allowed jku": lambda: sign(claims()),
    "ES256 configured for the issuer": lambda: sign(claims(), EHR_ES256),
    "audience as an array": lambda: sign(claims(aud=["https://other.example", AUDIENCE])),
    "extra claims some EHRs send": lambda: sign(
        claims(sub="client-1", tenant="t1", nbf=int(NOW.timestamp()) - 300)
    ),
    "small clock skew (iat 30 s ahead)": lambda: sign(claims(iat=int(NOW.timestamp()) + 30)),
    "RS384 from a configured JWKS URL (Oracle Health style)": lambda: sign(
        claims(iss=CERNER), CERNER_KEY, jku=None
    ),
    "RS384 Epic style (jku under the FHIR base, sub, nbf)": lambda: sign(
        claims(iss=EPIC, sub="epic-client-id", nbf=int(NOW.timestamp()) - 300),
        EPIC_KEY,
        jku=EPIC_KEYS + "client",
    ),
    "pinned local JWKS, no network": lambda: sign(
        claims(iss="https://pinned.example.org"), PINNED_KEY, jku=None
    ),
}

BAD: dict[str, Callable[[], str]] = {
    "expired": lambda: sign(claims(exp=int(NOW.timestamp()) - 120)),
    "not yet valid (nbf)": lambda: sign(claims(nbf=int(NOW.timestamp()) + 600)),
    "issued in the future": lambda: sign(claims(iat=int(NOW.timestamp()) + 600)),
    "wrong audience": lambda: sign(claims(aud="https://cds.example/cds-services/other")),
    "unknown issuer": lambda: sign(claims(iss="https://evil.example")),
    "jku not on the allowlist": lambda: sign(claims(), jku="https://evil.example/jwks.json"),
    "no jku for a jku issuer": lambda: sign(claims(), jku=None),
    "alg none": lambda: unsigned(claims()),
    "HS256 signed with the public key": lambda: hmac_with_public_key(claims()),
    "tampered payload": lambda: tampered(sign(claims())),
    "signed by another key under a known kid": lambda: sign(claims(), ROGUE_KEY, kid=EHR_KEY.kid),
    "unknown kid": lambda: sign(claims(), ROGUE_KEY),
    "RS256 not configured for the issuer": lambda: sign(claims(iss=CERNER), rs("RS256"), jku=None),
    "missing iss": lambda: sign(claims(iss=None)),
    "missing aud": lambda: sign(claims(aud=None)),
    "missing exp": lambda: sign(claims(exp=None)),
    "missing iat": lambda: sign(claims(iat=None)),
    "missing jti": lambda: sign(claims(jti=None)),
    "not a JWT": lambda: "not-a-token",
    "alg as a list": lambda: forged_header({"alg": ["ES384"], "kid": EHR_KEY.kid, "jku": EHR_JWKS}),
    "kid not a string": lambda: forged_header({"alg": "ES384", "kid": 123, "jku": EHR_JWKS}),
    "exp in the far future": lambda: sign(claims(exp=10**20)),
    "lifetime over the maximum": lambda: sign(claims(exp=int(NOW.timestamp()) + 7200)),
    "exp not a number": lambda: sign(claims(exp="soon")),
    "iat NaN (every comparison with it is false)": lambda: sign(claims(iat=float("nan"))),
    "lifetime past what a float holds": lambda: sign(claims(exp=1e308, iat=-1e308)),
    "jku walking out of the allowlisted folder": lambda: sign(
        claims(iss=EPIC), EPIC_KEY, jku=EPIC_KEYS + "../../../../uploads/evil.json"
    ),
    "jku over plain http": lambda: sign(
        claims(iss=EPIC), EPIC_KEY, jku=EPIC_KEYS.replace("https://", "http://") + "x"
    ),
}


def jwt_client(
    client_at: ClientFactory, issuers_file: Path, *, refetch_seconds: int
) -> httpx.AsyncClient:
    """The service verifying JWTs from the test issuers, its clock inside the tokens' lifetime."""
    client = client_at(
        cases.MAYA_SUSPECT_DAY,
        require_jwt=True,
        trusted_issuers_file=issuers_file,
        jwks_refetch_seconds=refetch_seconds,
        public_base_url=BASE,
    )
    client._transport.app.state.collaborators.clock = lambda: NOW  # type: ignore[attr-defined]
    return client


def forged_header(header: dict[str, Any]) -> str:
    payload = b64(json.dumps(claims()).encode())
    return f"{b64(json.dumps(header).encode())}.{payload}.{b64(b'not-a-signature')}"


async def test_jwt_good_tokens_are_accepted_and_bad_ones_rejected(post: Post) -> None:
    for name, make in GOOD.items():
        response = await post(make())
        assert response.status_code == 200, (name, response.text)
    rejected = 0
    for name, make in BAD.items():
        response = await post(make())
        assert response.status_code == 401, (name, response.status_code, response.text)
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        # Where to look, and nothing of which check failed.
        assert response.json()["issue"][0]["details"]["text"] == (
            "Unauthorized: the bearer token was not accepted (the service's log names the "
            "reason, event auth_failed)."
        )
        rejected += 1
    for token, scheme in ((None, "Bearer"), ("abc", "Basic"), ("", "Bearer")):
        response = await post(token, scheme)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"  # RFC 6750 3.1: no error code
        assert response.json()["issue"][0]["details"]["text"].startswith(
            "Unauthorized: no bearer token."
        )
        rejected += 1
    record_figure("jwt: good tokens accepted", len(GOOD))
    record_figure("jwt: bad tokens rejected", rejected)
    assert rejected == len(BAD) + 3


async def test_jwt_replayed_jti_is_rejected(post: Post) -> None:
    token = sign(claims())
    assert (await post(token)).status_code == 200
    assert (await post(token)).status_code == 401


async def test_jwt_reason_goes_to_the_log_not_the_response(
    post: Post, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="cds_service"):
        response = await post(sign(claims(exp=int(NOW.timestamp()) - 120)))
    assert "expired" not in response.text
    assert any(getattr(r, "fields", {}).get("reason") == "token expired" for r in caplog.records)


async def test_jwt_key_rotation_unknown_kid_fetches_the_jwks_again(
    client_at: ClientFactory, issuers_file: Path
) -> None:
    new_key = es()
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(EHR_JWKS)
        route.mock(return_value=httpx.Response(200, json={"keys": [EHR_KEY.public_jwk()]}))
        client = jwt_client(client_at, issuers_file, refetch_seconds=0)
        body = hook_request(cases.maya_before_mri(), pid="maya")
        first = await client.post(
            SERVICE_URL, json=body, headers={"Authorization": f"Bearer {sign(claims())}"}
        )
        route.mock(
            return_value=httpx.Response(
                200, json={"keys": [EHR_KEY.public_jwk(), new_key.public_jwk()]}
            )
        )
        rotated = await client.post(
            SERVICE_URL, json=body, headers={"Authorization": f"Bearer {sign(claims(), new_key)}"}
        )
    assert (first.status_code, rotated.status_code) == (200, 200)
    assert route.call_count == 2


@pytest.mark.parametrize("refetch_seconds", [0, 10])
async def test_jwt_a_burst_of_calls_shares_one_jwks_fetch(
    client_at: ClientFactory, issuers_file: Path, refetch_seconds: int
) -> None:
    """Concurrent calls on a cold cache fetch the JWKS once, and every good token is accepted
    (the fetch rationing counts one new source, not one per call). With re-fetching allowed, a
    burst after a key rotation fetches once more, not once per call."""
    new_key = es()
    served = {"keys": [EHR_KEY.public_jwk()]}

    async def slow_jwks(_: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)  # the fetch is still in flight when the other calls arrive
        return httpx.Response(200, json=served)

    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(EHR_JWKS).mock(side_effect=slow_jwks)
        client = jwt_client(client_at, issuers_file, refetch_seconds=refetch_seconds)
        body = hook_request(cases.maya_before_mri(), pid="maya")

        async def burst(key: Key) -> list[int]:
            headers = [{"Authorization": f"Bearer {sign(claims(), key)}"} for _ in range(6)]
            calls = [client.post(SERVICE_URL, json=body, headers=h) for h in headers]
            return [r.status_code for r in await asyncio.gather(*calls)]

        cold = await burst(EHR_KEY)
        fetches_cold = route.call_count
        if refetch_seconds == 0:
            served = {"keys": [EHR_KEY.public_jwk(), new_key.public_jwk()]}
            rotated = await burst(new_key)
            assert (rotated, route.call_count) == ([200] * 6, 2)
    assert (cold, fetches_cold) == ([200] * 6, 1)


async def test_jwt_unknown_kids_do_not_hammer_the_issuer(
    client_at: ClientFactory, issuers_file: Path
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(EHR_JWKS).mock(
            return_value=httpx.Response(200, json={"keys": [EHR_KEY.public_jwk()]})
        )
        client = jwt_client(client_at, issuers_file, refetch_seconds=60)
        body = hook_request(cases.maya_before_mri(), pid="maya")
        for _ in range(5):
            await client.post(
                SERVICE_URL, json=body, headers={"Authorization": f"Bearer {sign(claims(), es())}"}
            )
    assert route.call_count == 1


async def test_jwt_many_jku_urls_under_an_allowed_prefix_do_not_cause_many_fetches(
    client_at: ClientFactory, issuers_file: Path
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(url__startswith=EPIC_KEYS).mock(
            return_value=httpx.Response(200, json={"keys": [EPIC_KEY.public_jwk()]})
        )
        client = jwt_client(client_at, issuers_file, refetch_seconds=60)
        body = hook_request(cases.maya_before_mri(), pid="maya")
        statuses = []
        for n in range(20):
            token = sign(claims(iss=EPIC), EPIC_KEY, jku=f"{EPIC_KEYS}client-{n}")
            statuses.append(
                (
                    await client.post(
                        SERVICE_URL, json=body, headers={"Authorization": f"Bearer {token}"}
                    )
                ).status_code
            )
    assert route.call_count == 2  # two new sources per window, then refused
    assert statuses[:2] == [200, 200]
    assert set(statuses[2:]) == {401}


async def test_jwt_discovery_and_preflight_need_no_token(
    client_at: ClientFactory, issuers_file: Path
) -> None:
    client = client_at(require_jwt=True, trusted_issuers_file=issuers_file, public_base_url=BASE)
    assert (await client.get("/cds-services")).status_code == 200
    preflight = await client.options(
        SERVICE_URL,
        headers={
            "Origin": "https://sandbox.cds-hooks.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200


# ---------------------------------------------------------------------------- the real sandbox token
SANDBOX_AUDIENCE_BASE = "http://127.0.0.1:54199"


@pytest.fixture
def sandbox_client(client_at: ClientFactory, tmp_path: Path) -> Any:
    folder = shared("cds-hooks-examples", "sandbox-jwt")
    config = tmp_path / "issuers.toml"
    config.write_text(
        'issuer = [{ iss = "https://sandbox.cds-hooks.org", algorithms = ["ES384"], '
        'jku_allowlist = ["https://sandbox.cds-hooks.org/.well-known/jwks.json"], development_only = true }]\n'
    )
    decoded = json.loads((folder / "hook-call-token.decoded.json").read_text())
    inside = datetime.fromtimestamp(decoded["claims"]["iat"] + 60, UTC)
    with respx.mock(assert_all_called=False) as mock:
        mock.get("https://sandbox.cds-hooks.org/.well-known/jwks.json").mock(
            return_value=httpx.Response(
                200, json=json.loads((folder / "sandbox-jwks.json").read_text())
            )
        )
        client = client_at(
            cases.MAYA_SUSPECT_DAY,
            require_jwt=True,
            trusted_issuers_file=config,
            public_base_url=SANDBOX_AUDIENCE_BASE,
        )
        client._transport.app.state.collaborators.clock = lambda: inside  # type: ignore[attr-defined]
        yield client, (folder / "hook-call-token.txt").read_text().strip()


async def test_jwt_real_sandbox_token_is_verified_then_refused_when_replayed_or_tampered(
    sandbox_client: Any,
) -> None:
    client, token = sandbox_client
    body = hook_request(cases.maya_before_mri(), pid="maya")

    async def send(t: str) -> int:
        response = await client.post(
            SERVICE_URL, json=body, headers={"Authorization": f"Bearer {t}"}
        )
        return int(response.status_code)

    assert await send(tampered(token)) == 401
    assert await send(token) == 200
    assert await send(token) == 401  # replayed jti


def test_jwt_example_issuers_file_loads(tmp_path: Path) -> None:
    issuers = load_issuers(
        Path(__file__).resolve().parents[2] / "docs" / "trusted-issuers.example.toml"
    )
    assert issuers["https://sandbox.cds-hooks.org"].development_only
    assert issuers["https://cds-hooks.cerner.com"].jwks_url == CERNER_JWKS
    epic = next(i for i in issuers.values() if "epic" in "".join(i.jku_allowlist))
    assert epic.algorithms == ("RS384",)
    assert epic.allows_jku(epic.jku_allowlist[0] + "530005/client-id")
    assert not epic.allows_jku("https://evil.example/api/epic/2019/Security/Open/PublicKeys/")


@pytest.mark.parametrize(
    "text",
    [
        'issuer = [{ iss = "x" }]',  # no key source
        'issuer = [{ iss = "x", jwks_url = "https://a", jwks_file = "b" }]',  # two sources
        'issuer = [{ iss = "x", jwks_url = "https://a", algorithms = ["HS256"] }]',  # HMAC
        'issuer = [{ iss = "x", jwks_url = "https://a" }, { iss = "x", jwks_url = "https://b" }]',
        'issuer = [{ iss = "x", jwks_url = "https://a", colour = "red" }]',
        # A pinned JWKS file missing, not JSON, not a JWKS, or empty: found at start, not by
        # refusing every call afterwards.
        'issuer = [{ iss = "x", jwks_file = "missing.json" }]',
        'issuer = [{ iss = "x", jwks_file = "garbage.json" }]',
        'issuer = [{ iss = "x", jwks_file = "not-a-jwks.json" }]',
        'issuer = [{ iss = "x", jwks_file = "empty.json" }]',
        'issuer = [{ iss = "x", jwks_file = "private.json" }]',  # a private key published
        'issuer = [{ iss = "x", jwks_file = "hmac.json" }]',  # no EC or RSA key
        'issuer = [{ iss = "x", jwks_file = "nested.json" }]',
        "a = " + "[" * 100_000,  # nested beyond the parser's recursion
    ],
)
def test_jwt_bad_issuer_files_stop_the_service(tmp_path: Path, text: str) -> None:
    private = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1())))
    (tmp_path / "private.json").write_text(json.dumps({"keys": [private]}))
    (tmp_path / "hmac.json").write_text('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}')
    (tmp_path / "nested.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "garbage.json").write_text("garbage")
    (tmp_path / "not-a-jwks.json").write_text('{"keys": 5}')
    (tmp_path / "empty.json").write_text('{"keys": []}')
    path = tmp_path / "issuers.toml"
    path.write_text(text)
    with pytest.raises(IssuerConfigError):
        load_issuers(path)


def test_jwt_off_on_a_non_loopback_address_refuses_to_start() -> None:
    with pytest.raises(SettingsRefusedError, match="CDS_ALLOW_INSECURE"):
        create_app(settings_for_tests(host="0.0.0.0", require_jwt=False))
    assert create_app(settings_for_tests(host="0.0.0.0", require_jwt=False, allow_insecure=True))
    assert create_app(settings_for_tests(host="0.0.0.0", require_jwt=True, public_base_url=BASE))


async def test_jwt_off_refuses_calls_arriving_on_a_non_loopback_address() -> None:
    """``uvicorn --host 0.0.0.0`` bypasses CDS_HOST: the request's own address decides."""
    app = create_app(settings_for_tests(require_jwt=False))
    body = hook_request(cases.maya_before_mri(), pid="maya")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://10.1.2.3"
    ) as outside:
        refused = await outside.post(SERVICE_URL, json=body)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as inside:
        allowed = await inside.post(SERVICE_URL, json=body)
    assert refused.status_code == 503
    assert allowed.status_code == 200


def test_jwt_issuers_file_may_be_json(tmp_path: Path) -> None:
    path = tmp_path / "issuers.json"
    path.write_text(
        json.dumps({"issuer": [{"iss": CERNER, "jwks_url": CERNER_JWKS, "algorithms": ["RS384"]}]})
    )
    assert load_issuers(path)[CERNER].algorithms == ("RS384",)


async def test_jwt_off_on_loopback_starts_with_a_loud_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(settings_for_tests(require_jwt=False))
    with caplog.at_level(logging.WARNING, logger="cds_service"):
        async with app.router.lifespan_context(app):
            pass
    assert any("JWT VERIFICATION IS OFF" in r.getMessage() for r in caplog.records)


async def test_jwt_development_issuer_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "issuers.toml"
    config.write_text(
        f'issuer = [{{ iss = "{CERNER}", jwks_url = "{CERNER_JWKS}", development_only = true }}]\n'
    )
    app = create_app(
        settings_for_tests(require_jwt=True, trusted_issuers_file=config, public_base_url=BASE)
    )
    with caplog.at_level(logging.WARNING, logger="cds_service"):
        async with app.router.lifespan_context(app):
            pass
    assert any(getattr(r, "fields", {}).get("issuer") == CERNER for r in caplog.records)


# ---------------------------------------------------------------------------- issue 9, items 1-3
async def test_jwt_token_for_another_service_named_through_the_host_header_is_refused(
    post: Post, client_at: ClientFactory, issuers_file: Path, jwks_served: Any
) -> None:
    """The audience is the configured public URL, never one built from Host or
    X-Forwarded-Proto: a token another CDS service received from the same EHR gets nothing."""
    client = jwt_client(client_at, issuers_file, refetch_seconds=0)
    body = hook_request(cases.maya_before_mri(), pid="maya")
    for scheme in ("http", "https"):
        token = sign(claims(aud=f"{scheme}://other-vendor.example{SERVICE_URL}"))
        response = await client.post(
            SERVICE_URL,
            json=body,
            headers={
                "Authorization": f"Bearer {token}",
                "Host": "other-vendor.example",
                "X-Forwarded-Proto": scheme,
                "X-Forwarded-Host": "other-vendor.example",
            },
        )
        assert response.status_code == 401, scheme
    assert (await post(sign(claims()))).status_code == 200  # its own audience still works


async def test_jwt_audience_behind_a_proxy_prefix_names_the_prefix_once(
    issuers_file: Path, jwks_served: Any
) -> None:
    """Behind a proxy that strips /base (uvicorn --root-path /base), the public base URL holds
    the prefix and the request path holds it too: the audience names it once."""
    app = create_app(
        settings_for_tests(
            require_jwt=True, trusted_issuers_file=issuers_file, public_base_url=BASE + "/base"
        ),
        clock=lambda: NOW,
    )
    transport = httpx.ASGITransport(app=app, root_path="/base")
    body = hook_request(cases.maya_before_mri(), pid="maya")
    async with httpx.AsyncClient(transport=transport, base_url=BASE + "/base") as client:
        for audience, status in (
            (f"{BASE}/base{SERVICE_URL}", 200),
            (f"{BASE}/base/base{SERVICE_URL}", 401),
            (f"{BASE}{SERVICE_URL}", 401),
        ):
            token = sign(claims(aud=audience))
            response = await client.post(
                SERVICE_URL.lstrip("/"), json=body, headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == status, (audience, response.text)


def test_jwt_on_without_a_public_base_url_refuses_to_start_in_one_line() -> None:
    with pytest.raises(SettingsRefusedError, match="CDS_PUBLIC_BASE_URL is required") as refused:
        create_app(settings_for_tests(require_jwt=True))
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "cds.example.org",
        "ftp://cds.example.org",
        "https://cds.example.org/?x=1",
        "https://u:p@cds.example.org",
    ],
)
def test_jwt_public_base_url_must_be_an_absolute_http_url(url: str) -> None:
    with pytest.raises(ValueError, match="public_base_url"):
        settings_for_tests(require_jwt=True, public_base_url=url)


async def test_jwt_unknown_cds_environment_variables_are_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CDS_PUBLIC_BASE_URI", "https://cds.example.org")  # the typo
    monkeypatch.setenv("CDS_PORT", "8080")  # a real setting: not listed
    app = create_app(settings_for_tests(require_jwt=False))
    with caplog.at_level(logging.WARNING, logger="cds_service"):
        async with app.router.lifespan_context(app):
            pass
    (warning,) = [r for r in caplog.records if "not settings" in r.getMessage()]
    assert warning.fields["variables"] == ["CDS_PUBLIC_BASE_URI"]  # type: ignore[attr-defined]


async def test_jwt_lifetime_is_five_minutes_plus_the_leeway_by_default(post: Post) -> None:
    start = int(NOW.timestamp()) - 30
    assert (await post(sign(claims(iat=start, exp=start + 360)))).status_code == 200
    assert (await post(sign(claims(iat=start, exp=start + 361)))).status_code == 401
    assert (await post(sign(claims(iat=start, exp=start + 3600)))).status_code == 401


async def auth_log(post: Post, caplog: pytest.LogCaptureFixture, token: str) -> dict[str, Any]:
    with caplog.at_level(logging.WARNING, logger="cds_service"):
        assert (await post(token)).status_code == 401
    (line,) = [r.fields for r in caplog.records if r.getMessage() == "auth_failed"]  # type: ignore[attr-defined]
    assert token not in json.dumps(line)
    assert token.split(".")[2] not in caplog.text  # nor its signature anywhere in the log
    fields: dict[str, Any] = line
    return fields


async def test_jwt_auth_failure_log_names_expected_and_presented_audience(
    post: Post, caplog: pytest.LogCaptureFixture
) -> None:
    line = await auth_log(post, caplog, sign(claims(aud="https://cds.example/other")))
    assert line["expectedAud"] == AUDIENCE
    assert line["presentedAud"] == ["https://cds.example/other"]


async def test_jwt_auth_failure_log_names_the_untrusted_issuer_and_the_trusted_ones(
    post: Post, caplog: pytest.LogCaptureFixture
) -> None:
    line = await auth_log(post, caplog, sign(claims(iss="https://evil.example")))
    assert line["presentedIss"] == "https://evil.example"
    assert EHR in line["trustedIss"]


@pytest.mark.parametrize(
    ("iss", "logged"),
    [
        ("Patient/PAT4711 Jane Doe 1970-01-01", "<not an http(s) URL>"),
        ("https://evil.example/Patient/PAT4711?name=Jane", "https://evil.example (path left out)"),
        ("https://" + "a" * 5000 + ".example", None),
    ],
)
async def test_jwt_unverified_issuer_is_logged_as_its_origin_only(
    post: Post, caplog: pytest.LogCaptureFixture, iss: str, logged: str | None
) -> None:
    """Anyone can write anything in an unverified token: the log keeps which host it claims,
    never free text, never at length."""
    line = await auth_log(post, caplog, sign(claims(iss=iss)))
    assert "PAT4711" not in json.dumps(line)
    assert len(json.dumps(line)) < 1000
    if logged:
        assert line["presentedIss"] == logged


async def test_jwt_unknown_kid_is_logged_short_and_plain(
    post: Post, caplog: pytest.LogCaptureFixture
) -> None:
    token = sign(claims(), ROGUE_KEY, kid="PAT4711 Jane Doe " + "x" * 100_000)
    line = await auth_log(post, caplog, token)
    assert line["reason"] == "no key with this kid in the issuer's JWKS"
    assert line["kid"] == "PAT4711JaneDoexxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…"
    assert len(json.dumps(line)) < 1000


@pytest.mark.parametrize("jti", [123, ["a"], {"x": 1}])
async def test_jwt_non_string_jti_is_named_as_such(
    post: Post, caplog: pytest.LogCaptureFixture, jti: Any
) -> None:
    line = await auth_log(post, caplog, sign(claims(jti=jti)))
    assert "jti" in line["reason"]
    assert "signature" not in line["reason"]


def test_jwt_off_refuses_a_server_address_that_is_not_text() -> None:
    """An ASGI server that fills ``scope["server"]`` oddly (a list, not the host's text) gets
    the 503 of an address that is not loopback, not a server error."""
    for host in (["10.0.0.5"], b"127.0.0.1", 167772165):
        request = Request({"type": "http", "server": (host, 80), "headers": []})
        with pytest.raises(InsecureBindingError):
            _refuse_insecure_non_loopback(request, allow_insecure=False)
    _refuse_insecure_non_loopback(
        Request({"type": "http", "server": ("::1", 80), "headers": []}), allow_insecure=False
    )
