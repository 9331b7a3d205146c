"""Reading a service's content folder (``cards/<folder>/``): TOML files checked against typed
schemas at start-up, so a typo stops the service at start rather than surfacing in a card."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from cds_service.platform import wire
from cds_service.platform.prefetch import PrefetchKey
from cds_service.platform.wire import Hook

_T = TypeVar("_T")


class ContentError(ValueError):
    """A content file is missing, malformed or inconsistent."""


class Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class Meta(Strict, frozen=True):
    version: str
    released: str


class ServiceText(Strict, frozen=True):
    id: str
    hook: Hook  # a hook the platform decodes: a typo stops the start, not every call
    title: str
    description: str


class SourceText(Strict, frozen=True):
    """Who the cards say they come from (CDS Hooks ``source.label``)."""

    label: str


class OverrideReason(Strict, frozen=True):
    code: str
    display: str


class OverrideReasons(Strict, frozen=True):
    """The override reasons a service's cards offer (CDS Hooks ``overrideReasons``)."""

    system: str
    reasons: tuple[OverrideReason, ...]

    def codes(self) -> frozenset[str]:
        return frozenset(r.code for r in self.reasons)

    def codings(self) -> tuple[wire.Coding, ...]:
        return tuple(
            wire.Coding(code=r.code, system=self.system, display=r.display) for r in self.reasons
        )


def definition(text: ServiceText, keys: tuple[PrefetchKey, ...]) -> wire.ServiceDefinition:
    """A service's discovery entry: its words from content, its prefetch templates."""
    return wire.ServiceDefinition(
        hook=text.hook,
        id=text.id,
        title=text.title,
        description=text.description,
        prefetch={key.name: key.template for key in keys},
    )


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ContentError(f"content file missing: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ContentError(f"{path.name}: {exc or type(exc).__name__}") from None
    except OSError as exc:  # a folder where a file should be, no permission, ...
        raise ContentError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None


def convert(data: Any, kind: type[_T], where: str) -> _T:
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise ContentError(f"{where}: {exc}") from None
