"""Codings written into the resources the service emits, as configured in cards/."""

from __future__ import annotations

from typing import Any

import msgspec


class CodingSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    system: str
    code: str
    display: str

    def to_fhir(self) -> dict[str, Any]:
        return {"system": self.system, "code": self.code, "display": self.display}
