"""The development token issuer of ``cds-service dev-token``: its key stays the owner's, its
JWKS always matches its key, and its tokens are what the service's verifier accepts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest

from cds_service.auth import dev_issuer
from cds_service.auth.issuers import load_issuers

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
AUDIENCE = "http://127.0.0.1:8080/cds-services/sacral-bsi"


def verify(issuer: dev_issuer.DevIssuer, token: str) -> dict[str, object]:
    keys = jwt.PyJWKSet.from_dict(json.loads(issuer.jwks_file.read_text()))
    (key,) = keys.keys
    claims: dict[str, object] = jwt.decode(
        token,
        key=key,
        algorithms=["ES384"],
        audience=AUDIENCE,
        options={"verify_exp": False, "verify_iat": False},
    )
    return claims


def test_dev_issuer_is_made_once_and_trusted_by_its_issuers_file(tmp_path: Path) -> None:
    folder = tmp_path / "dev"
    issuer = dev_issuer.ensure(folder)
    assert issuer.key_file.stat().st_mode & 0o777 == 0o600
    key = issuer.key_file.read_bytes()
    assert dev_issuer.ensure(folder).key_file.read_bytes() == key  # reused, not remade
    (trusted,) = load_issuers(issuer.issuers_file).values()
    assert trusted.iss == dev_issuer.DEV_ISSUER
    assert trusted.development_only is True
    claims = verify(issuer, issuer.sign(AUDIENCE, NOW))
    assert claims["iss"] == dev_issuer.DEV_ISSUER
    assert claims["exp"] == claims["iat"] + 300  # type: ignore[operator]
    first, second = issuer.sign(AUDIENCE, NOW), issuer.sign(AUDIENCE, NOW)
    assert verify(issuer, first)["jti"] != verify(issuer, second)["jti"]


def test_dev_issuer_key_made_again_gets_a_matching_jwks(tmp_path: Path) -> None:
    issuer = dev_issuer.ensure(tmp_path / "dev")
    issuer.key_file.unlink()
    issuer = dev_issuer.ensure(tmp_path / "dev")
    verify(issuer, issuer.sign(AUDIENCE, NOW))  # the JWKS is the new key's


def test_dev_issuer_key_readable_by_others_is_made_private(tmp_path: Path) -> None:
    issuer = dev_issuer.ensure(tmp_path / "dev")
    issuer.key_file.chmod(0o644)
    dev_issuer.ensure(tmp_path / "dev")
    assert issuer.key_file.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("content", [b"garbage", b""])
def test_dev_issuer_broken_key_says_so(tmp_path: Path, content: bytes) -> None:
    folder = tmp_path / "dev"
    folder.mkdir()
    (folder / "key.pem").write_bytes(content)
    with pytest.raises(ValueError, match="is not a PEM private key"):
        dev_issuer.ensure(folder)


@pytest.mark.parametrize("name", ["key.pem", "jwks.json", "issuers.toml"])
def test_dev_issuer_never_writes_through_a_symbolic_link(tmp_path: Path, name: str) -> None:
    dev_issuer.ensure(tmp_path / "dev")
    target = tmp_path / "someone-elses-file"
    target.write_text("theirs")
    target.chmod(0o644)
    (tmp_path / "dev" / name).unlink()
    (tmp_path / "dev" / name).symlink_to(target)
    with pytest.raises(ValueError, match="is a symbolic link"):
        dev_issuer.ensure(tmp_path / "dev")
    assert target.read_text() == "theirs"
    assert target.stat().st_mode & 0o777 == 0o644
