"""Content of the order services, loaded from ``cards/sacral-bsi-orders/``: card wording,
override reasons and the order value sets (added to card A's terminology)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec

from cds_service.platform.content import (
    ContentError,
    Meta,
    OverrideReasons,
    ServiceText,
    Strict,
    convert,
    read_toml,
)
from cds_service.services.sacral_bsi.content import Content as RuleContent
from fhir_mappings.orders import OrderSpec
from fhir_mappings.terminology import Terminology, ValueSetSpec

FOLDER = "sacral-bsi-orders"


class Services(Strict, frozen=True):
    order_select: ServiceText
    order_sign: ServiceText


class SourceText(Strict, frozen=True):
    label: str


class ImagingText(Strict, frozen=True):
    summary: str
    summary_short: str
    study_xray: str
    study_ct: str
    detail: str
    mri_sacrum: str
    mri_pelvis: str
    mri_lumbosacral: str
    mri_words_sacrum: str
    mri_words_pelvis: str
    mri_words_lumbosacral: str
    update_label: str
    update_label_many: str
    update_description: str
    replace_label: str
    replace_label_many: str
    add_label: str
    delete_description: str
    create_description: str
    order_note: str


class SiTreatmentText(Strict, frozen=True):
    summary: str
    summary_short: str
    injection: str
    physio: str
    detail: str


class ConfirmedText(Strict, frozen=True):
    summary_injection: str
    summary_running: str
    injection: str
    running: str
    detail: str
    finding_condition: str
    finding_report: str


class Words(Strict, frozen=True):
    verb_one: str
    verb_many: str
    order_join: str
    treatment_join: str
    more: str
    footer: str


class OrderCards(Strict, frozen=True):
    meta: Meta
    services: Services
    source: SourceText
    imaging: ImagingText
    si_treatment: SiTreatmentText
    confirmed: ConfirmedText
    words: Words
    override_reasons: OverrideReasons
    lumbosacral: OrderSpec  # the MRI that replaces lumbar imaging


class OrderValueSets(Strict, frozen=True):
    valuesets: dict[str, ValueSetSpec]


@dataclass(frozen=True)
class OrderContent:
    cards: OrderCards
    rule: RuleContent  # card A's content: the rule's parameters, value sets, MRI orders
    terminology: Terminology  # card A's value sets and the order value sets
    directory: Path
    # The start of the rehab plan's return-to-running phase (days after Day 0): until then a
    # running programme for a confirmed injury is a warning.
    running_from_day: int

    @property
    def version(self) -> str:
        """Both content versions: the order cards' and the rule's they stand on."""
        return f"{self.cards.meta.version}+sacral-bsi.{self.rule.version}"


def load_order_content(directory: Path, rule: RuleContent) -> OrderContent:
    cards = convert(read_toml(directory / "content.toml"), OrderCards, "content.toml")
    sets = convert(read_toml(directory / "valuesets.toml"), OrderValueSets, "valuesets.toml")
    spec = rule.terminology.spec
    clash = sorted(set(sets.valuesets) & set(spec.valuesets))
    if clash:
        raise ContentError(f"valuesets.toml: value set(s) {clash} already defined by card A")
    try:
        terminology = Terminology(
            msgspec.structs.replace(spec, valuesets={**spec.valuesets, **sets.valuesets}),
            rule.terminology.accept_marks,
        )
    except ValueError as exc:
        raise ContentError(f"{directory.name}/valuesets.toml: {exc}") from None
    running = [p for p in rule.protocol.phase if "return to running" in p.name.lower()]
    if len(running) != 1:
        raise ContentError(
            "sacral-bsi/rehab-protocol.toml: the order services need exactly one phase named "
            "'... return to running ...' (its start is when a running programme may be the plan)"
        )
    return OrderContent(cards, rule, terminology, directory, running[0].start_day)
