"""The CDS Hooks 2.0.1 response rules, checked on any response body the service produces."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from fhir_mappings import r4

INDICATORS = {"info", "warning", "critical"}
ACTION_TYPES = {"create", "update", "delete"}


class RuleCounter:
    """Counts the rule checks performed, for the suite's figures."""

    checks = 0


def _check(condition: bool, message: str) -> None:
    RuleCounter.checks += 1
    assert condition, message


def assert_no_null_or_empty(value: Any, path: str = "$") -> None:
    """No null values, empty strings, empty arrays or empty objects anywhere."""
    _check(value is not None, f"null at {path}")
    if isinstance(value, str):
        _check(value != "", f"empty string at {path}")
    elif isinstance(value, list):
        _check(bool(value), f"empty array at {path}")
        for n, item in enumerate(value):
            assert_no_null_or_empty(item, f"{path}[{n}]")
    elif isinstance(value, dict):
        _check(bool(value), f"empty object at {path}")
        for key, item in value.items():
            assert_no_null_or_empty(item, f"{path}.{key}")


def _absolute(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def assert_spec_response(body: dict[str, Any]) -> int:
    """Check every rule; returns how many cards were checked."""
    _check(set(body) <= {"cards", "systemActions"}, f"unexpected keys {set(body)}")
    _check(isinstance(body["cards"], list), "cards is an array")
    for key, value in body.items():
        if key != "cards" or value:  # only the top-level cards may be []
            assert_no_null_or_empty(value, f"$.{key}")
    for card in body["cards"]:
        _check(_uuid(card["uuid"]), "card.uuid")
        _check(len(card["summary"]) < 140, f"summary too long: {card['summary']}")
        _check(card["indicator"] in INDICATORS, "indicator")
        _check(bool(card["source"]["label"]), "source.label")
        suggestions = card.get("suggestions", [])
        if suggestions:
            _check(card.get("selectionBehavior") in ("at-most-one", "any"), "selectionBehavior")
        for suggestion in suggestions:
            _check(bool(suggestion["label"]), "suggestion.label")
            _check(_uuid(suggestion["uuid"]), "suggestion.uuid")
            for action in suggestion.get("actions", []):
                _check_action(action)
        for reason in card.get("overrideReasons", []):
            _check(
                bool(reason["code"] and reason["system"] and reason["display"]), "overrideReason"
            )
        for link in card.get("links", []):
            _check(bool(link["label"]), "link.label")
            _check(_absolute(link["url"]), f"link.url not absolute: {link['url']}")
            _check(link["type"] in ("absolute", "smart"), "link.type")
            if "appContext" in link:
                _check(link["type"] == "smart", "appContext only with smart links")
    for action in body.get("systemActions", []):
        _check_action(action)
    return len(body["cards"])


def _check_action(action: dict[str, Any]) -> None:
    _check(action["type"] in ACTION_TYPES, "action.type")
    _check(bool(action["description"]), "action.description")
    if "resource" in action:
        RuleCounter.checks += 1
        r4.validate(action["resource"])


def assert_operation_outcome(body: dict[str, Any]) -> None:
    """An error body: a JSON OperationOutcome whose issue says what went wrong."""
    _check(body.get("resourceType") == "OperationOutcome", "error body is an OperationOutcome")
    issue = body["issue"][0]
    _check(issue["severity"] == "error", "issue.severity")
    _check(bool(issue["code"]), "issue.code")
    _check(bool(issue["details"]["text"]), "issue.details.text")
    assert_no_null_or_empty(body)
