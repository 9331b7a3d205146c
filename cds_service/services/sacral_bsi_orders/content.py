"""Content of the order services, loaded from ``cards/sacral-bsi-orders/``: card wording,
override reasons and the order value sets (added to card A's terminology)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec

from cds_service.clinical.orders import LoadWindows
from cds_service.platform.content import (
    ContentError,
    Meta,
    OverrideReasons,
    ServiceText,
    SourceText,
    Strict,
    convert,
    read_toml,
)
from cds_service.services.sacral_bsi.content import Content as RuleContent
from fhir_mappings.careplan import PhaseSpec
from fhir_mappings.orders import OrderSpec
from fhir_mappings.terminology import Terminology, ValueSetSpec

FOLDER = "sacral-bsi-orders"


class Services(Strict, frozen=True):
    order_select: ServiceText
    order_sign: ServiceText


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
    lumbosacral_note: str


class SiTreatmentText(Strict, frozen=True):
    summary: str
    summary_short: str
    injection: str
    physio: str
    detail: str


class ConfirmedText(Strict, frozen=True):
    summary_injection: str
    summary_load_early: str
    summary_load_cleared: str
    detail_injection: str
    detail_load: str
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
    # From the rehab plan: when it allows hops and running (days after Day 0), and the
    # criteria to start each (the move-on criteria of the phase before).
    windows: LoadWindows
    hopping_criteria: str
    running_criteria: str

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
    phases = rule.protocol.phase
    hopping, running = (_phase(phases, words) for words in ("impact", "return to running"))
    return OrderContent(
        cards,
        rule,
        terminology,
        directory,
        LoadWindows(phases[hopping].start_day, phases[running].start_day),
        phases[hopping - 1].criteria,
        phases[running - 1].criteria,
    )


def _phase(phases: tuple[PhaseSpec, ...], words: str) -> int:
    """The index of the one phase whose name holds ``words`` (not the first: the criteria to
    start it are those of the phase before)."""
    found = [n for n, p in enumerate(phases) if words in p.name.lower()]
    if len(found) != 1 or found[0] == 0:
        raise ContentError(
            f"sacral-bsi/rehab-protocol.toml: the order services need exactly one phase, not the "
            f"first, whose name holds '{words}' (when the plan allows hops, and running)"
        )
    return found[0]
