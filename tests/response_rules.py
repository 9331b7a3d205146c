"""The CDS Hooks 2.0.1 response rules, checked on any response body the service produces."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from fhir_mappings import r4

INDICATORS = {"info", "warning", "critical"}
ACTION_TYPES = {"create", "update", "delete"}


def assert_no_null_or_empty(value: Any, path: str = "$") -> None:
    """No null values, empty strings, empty arrays or empty objects anywhere."""
    assert value is not None, f"null at {path}"
    if isinstance(value, str):
        assert value != "", f"empty string at {path}"
    elif isinstance(value, list):
        assert value, f"empty array at {path}"
        for n, item in enumerate(value):
            assert_no_null_or_empty(item, f"{path}[{n}]")
    elif isinstance(value, dict):
        assert value, f"empty object at {path}"
        for key, item in value.items():
            assert_no_null_or_empty(item, f"{path}.{key}")


def _absolute(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def assert_spec_response(body: dict[str, Any]) -> int:
    """Check every rule; returns how many cards were checked."""
    assert set(body) <= {"cards", "systemActions"}, set(body)
    assert isinstance(body["cards"], list)
    for key, value in body.items():
        if key != "cards" or value:
            assert_no_null_or_empty(value, f"$.{key}")
    for card in body["cards"]:
        uuid.UUID(card["uuid"])
        assert len(card["summary"]) < 140, card["summary"]
        assert card["indicator"] in INDICATORS
        assert card["source"]["label"]
        suggestions = card.get("suggestions", [])
        if suggestions:
            assert card.get("selectionBehavior") in ("at-most-one", "any")
        for suggestion in suggestions:
            assert suggestion["label"]
            uuid.UUID(suggestion["uuid"])
            for action in suggestion.get("actions", []):
                assert action["type"] in ACTION_TYPES
                assert action["description"]
                if "resource" in action:
                    r4.validate(action["resource"])
        for reason in card.get("overrideReasons", []):
            assert reason["code"]
            assert reason["system"]
            assert reason["display"]
        for link in card.get("links", []):
            assert link["label"]
            assert _absolute(link["url"]), link["url"]
            assert link["type"] in ("absolute", "smart")
            if "appContext" in link:
                assert link["type"] == "smart"
    for action in body.get("systemActions", []):
        assert action["type"] in ACTION_TYPES
    return len(body["cards"])
