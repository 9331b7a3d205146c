"""A development-only token issuer, for trying the service with JWT verification on.

NOT FOR PRODUCTION. ``cds-service dev-token`` makes, once, a local EC P-384 key (ES384, as the
CDS Hooks spec recommends), its JWKS, and a trusted-issuers file that trusts it and nothing else
(marked ``development_only``, so the service warns at start and on every call it accepts), then
signs short-lived tokens with it as an EHR would: ``iss``, ``aud`` (the service URL called),
``iat``, ``exp`` (5 minutes), a fresh ``jti``. Anyone who can read the key can call a service
that trusts it: it lives under ``./var/dev-issuer`` (mode 600), never in a production issuers
file.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

DEV_ISSUER = "urn:sacral-bsi-cds:dev-token:not-for-production"
DEV_KID = "dev-token-es384-1"
DEFAULT_FOLDER = Path("var") / "dev-issuer"
LIFETIME = timedelta(minutes=5)


@dataclass(frozen=True)
class DevIssuer:
    folder: Path

    @property
    def key_file(self) -> Path:
        return self.folder / "key.pem"

    @property
    def jwks_file(self) -> Path:
        return self.folder / "jwks.json"

    @property
    def issuers_file(self) -> Path:
        return self.folder / "issuers.toml"

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        try:
            key = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{self.key_file} is not a PEM private key ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp384r1":
            raise ValueError(f"{self.key_file} is not an EC P-384 private key")
        return key

    def sign(self, audience: str, now: datetime) -> str:
        """A token for one call to ``audience`` (the service URL, path included)."""
        key = self.private_key()
        claims = {
            "iss": DEV_ISSUER,
            "sub": "cds-service-dev-token",
            "aud": audience,
            "iat": int(now.timestamp()),
            "exp": int((now + LIFETIME).timestamp()),
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(claims, key, algorithm="ES384", headers={"kid": DEV_KID, "typ": "JWT"})


def ensure(folder: Path = DEFAULT_FOLDER) -> DevIssuer:
    """The development issuer in ``folder``: the key made on first use and reused afterwards
    (made the owner's alone if it was not); the JWKS and issuers file written from it each time,
    so they always match it. Raises ValueError or OSError saying what is wrong with the folder."""
    issuer = DevIssuer(folder)
    for made in (issuer.key_file, issuer.jwks_file, issuer.issuers_file):
        if made.is_symlink():  # never change, or write through, what a link points to
            raise ValueError(
                f"{made} is a symbolic link; the development issuer writes only files of its own"
            )
    if issuer.key_file.is_file() and issuer.key_file.stat().st_mode & 0o077:
        issuer.key_file.chmod(0o600)
    if not issuer.key_file.exists():
        folder.mkdir(parents=True, exist_ok=True)
        pem = ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        descriptor = os.open(issuer.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
    # Written each time: a key made again must not meet the JWKS of the one before.
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(issuer.private_key().public_key()))
    public.update({"kid": DEV_KID, "alg": "ES384", "use": "sig"})
    _replace(issuer.jwks_file, json.dumps({"keys": [public]}, indent=2) + "\n")
    _replace(
        issuer.issuers_file,
        "# DEVELOPMENT ONLY: made by `cds-service dev-token`. Trusts a key stored in plain\n"
        "# text beside this file. Never use this file, or copy this issuer, in production.\n"
        "[[issuer]]\n"
        f'iss = "{DEV_ISSUER}"\n'
        'algorithms = ["ES384"]\n'
        'jwks_file = "jwks.json"\n'
        "development_only = true\n"
        'description = "cds-service dev-token: local development key, not for production"\n',
    )
    return issuer


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` at once (a running service may be reading it)."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(text)
    temporary.replace(path)
