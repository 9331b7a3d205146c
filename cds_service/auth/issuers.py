"""Trusted issuers: which EHRs may call the service, and where their public keys come from.

Configuration, not code: a TOML or JSON file named by ``CDS_TRUSTED_ISSUERS_FILE``. Each issuer
gives its ``iss``, the signing algorithms it uses, and its keys by exactly one of:

- ``jku_allowlist``: the JWKS URLs its tokens may name in their ``jku`` header (an entry ending
  in ``/`` allows every URL under it); the JWKS is fetched only from an allowed URL;
- ``jwks_url``: the JWKS URL to fetch, whatever the token says;
- ``jwks_file``: a local JWKS file, pinned (no network at verification time).

See ``docs/trusted-issuers.example.toml`` for the public CDS Hooks Sandbox (development and
testing only: its private key is public), Epic and Oracle Health (Cerner).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Literal

import jwt
import msgspec

Algorithm = Literal["ES384", "RS384", "ES256", "RS256"]
DEFAULT_ALGORITHMS: tuple[Algorithm, ...] = ("ES384", "RS384")


class TrustedIssuer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    iss: str
    algorithms: tuple[Algorithm, ...] = DEFAULT_ALGORITHMS
    jku_allowlist: tuple[str, ...] = ()
    jwks_url: str | None = None
    jwks_file: str | None = None
    development_only: bool = False
    description: str | None = None

    def allows_jku(self, jku: str) -> bool:
        return any(
            jku == allowed or (allowed.endswith("/") and jku.startswith(allowed))
            for allowed in self.jku_allowlist
        )


class _IssuersFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    issuer: tuple[TrustedIssuer, ...] = ()


class IssuerConfigError(ValueError):
    """The trusted-issuers file is missing, malformed or inconsistent."""


def load_issuers(path: Path) -> dict[str, TrustedIssuer]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IssuerConfigError(
            f"cannot read trusted issuers file {path}: {exc.strerror}"
        ) from None
    try:
        data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode())
        issuers = msgspec.convert(data, _IssuersFile).issuer
    except (ValueError, RecursionError, msgspec.ValidationError) as exc:
        raise IssuerConfigError(f"{path.name}: {str(exc) or type(exc).__name__}") from None
    out: dict[str, TrustedIssuer] = {}
    for listed in issuers:
        issuer = listed
        sources = [bool(issuer.jku_allowlist), bool(issuer.jwks_url), bool(issuer.jwks_file)]
        if sum(sources) != 1:
            raise IssuerConfigError(
                f"{path.name}: issuer {issuer.iss!r} needs exactly one of jku_allowlist, "
                "jwks_url, jwks_file"
            )
        if issuer.jwks_file and not Path(issuer.jwks_file).is_absolute():
            issuer = msgspec.structs.replace(issuer, jwks_file=str(path.parent / issuer.jwks_file))
        if issuer.jwks_file:
            _check_pinned_jwks(path.name, issuer.iss, Path(issuer.jwks_file))
        if issuer.iss in out:
            raise IssuerConfigError(f"{path.name}: issuer {issuer.iss!r} listed twice")
        out[issuer.iss] = issuer
    return out


def _check_pinned_jwks(where: str, iss: str, jwks_file: Path) -> None:
    """A pinned JWKS file is read at start, so a missing or broken one stops the service
    instead of refusing every call later (the verifier reads it again, for rotation)."""
    try:
        document = json.loads(jwks_file.read_text(encoding="utf-8"))
        keys = jwt.PyJWKSet.from_dict(document).keys
    except OSError as exc:
        raise IssuerConfigError(
            f"{where}: issuer {iss!r}: cannot read jwks_file {jwks_file}: {exc.strerror}"
        ) from None
    except (
        ValueError,
        TypeError,
        AttributeError,
        RecursionError,
        jwt.PyJWKSetError,
        jwt.PyJWKError,
    ) as exc:
        raise IssuerConfigError(
            f"{where}: issuer {iss!r}: jwks_file {jwks_file} is not a usable JWKS: {exc}"
        ) from None
    if any(isinstance(k, dict) and "d" in k for k in document["keys"]):
        raise IssuerConfigError(
            f"{where}: issuer {iss!r}: jwks_file {jwks_file} holds a private key: keep only "
            "the public keys there"
        )
    if not any(k.key_type in ("EC", "RSA") for k in keys):
        raise IssuerConfigError(
            f"{where}: issuer {iss!r}: jwks_file {jwks_file} has no EC or RSA public key"
        )
