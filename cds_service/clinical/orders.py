"""Orders being placed for a runner with one-sided low back or buttock pain (issue 10; brief 2,
7.5, 8, 14.5): what kind each is, and which deserves a card.

Pure: the FHIR mapping (``fhir_mappings/draft_orders.py``) turns the hook's ``draftOrders`` into
``DraftOrder`` facts; this module decides.
- A plain X-ray of the lumbar spine, pelvis, sacrum or SI joints, or a CT of the lumbar spine or
  pelvis, for a patient card A suspects: X-ray and CT are often normal early in a sacral BSI,
  MRI is the test.
- An SI-joint injection, or physiotherapy whose reason is SI-joint pain or sacroiliitis, for
  such a patient: consider a sacral BSI before treating it as SI-joint pain.
- For a confirmed, current sacral BSI (brief 8): an SI-joint injection or a running or impact
  programme is a warning.
- An MRI of the region is the right test: no card, for any order of the session.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from cds_service.clinical.sacral_bsi import Confirmation, Suspicion


class OrderKind(enum.StrEnum):
    XRAY = "xray"  # plain radiography of the lumbar spine, pelvis, sacrum/coccyx or SI joints
    CT = "ct"  # CT of the lumbar spine or pelvis
    MRI = "mri"  # MRI of the lumbar spine, sacrum or pelvis
    SI_INJECTION = "si_injection"
    PHYSIO = "physio"  # physiotherapy / physical therapy referral or evaluation
    RUNNING = "running"  # a running, jumping or impact programme
    OTHER = "other"


Region = Literal["lumbar", "pelvis", "sacrum", "si_joint"]


@dataclass(frozen=True)
class DraftOrder:
    source: str  # "ServiceRequest/example-request-id"
    kind: OrderKind
    label: str  # what the order is called (its text, else its display)
    region: Region | None = None  # for X-ray and CT
    si_reason: bool = False  # a reason (coded, or a referenced Condition) is SI-joint pain
    status: str | None = None
    references_reason: bool = False  # it names a reason Condition (read with the record)

    @property
    def may_matter(self) -> bool:
        """Whether this order can give a card for some record: what the services decide
        before fetching the record."""
        if self.kind in (OrderKind.XRAY, OrderKind.CT, OrderKind.SI_INJECTION, OrderKind.RUNNING):
            return True
        return self.kind is OrderKind.PHYSIO and (self.si_reason or self.references_reason)


@dataclass(frozen=True)
class ImagingInstead:
    """X-ray or CT ordered for a patient card A suspects: suggest MRI instead. One finding for
    all such orders of the call (one card, one MRI)."""

    orders: tuple[DraftOrder, ...]
    suspicion: Suspicion

    @property
    def mri(self) -> MriProposal:
        """The MRI to propose: the pelvis for buttock or hip pain (14.5); the lumbar spine and
        sacrum when lumbar imaging was ordered (it was asked about the lumbar spine, and in
        young runners L5 spondylolysis is the other cause, 14.5); else the sacrum."""
        if self.suspicion.mri == "pelvis":
            return "pelvis"
        if any(o.region == "lumbar" for o in self.orders):
            return "lumbosacral"
        return "sacrum"


@dataclass(frozen=True)
class ConsiderBsiFirst:
    """SI-joint injection or physiotherapy for SI-joint pain, for a patient card A suspects."""

    orders: tuple[DraftOrder, ...]
    suspicion: Suspicion
    mri_in_session: bool = False  # then no MRI is proposed: one is being ordered


@dataclass(frozen=True)
class ConfirmedBsiWarning:
    """SI-joint injection, or running / impact programme, for a confirmed sacral BSI: one
    finding for each of the two kinds."""

    orders: tuple[DraftOrder, ...]
    confirmation: Confirmation

    @property
    def injection(self) -> bool:
        return self.orders[0].kind is OrderKind.SI_INJECTION


OrderFinding = ImagingInstead | ConsiderBsiFirst | ConfirmedBsiWarning
MriProposal = Literal["sacrum", "pelvis", "lumbosacral"]

FINDING_KINDS: dict[type, str] = {
    ImagingInstead: "order_imaging",
    ConsiderBsiFirst: "order_si_treatment",
    ConfirmedBsiWarning: "order_confirmed_warning",
}


def finding_kind(finding: OrderFinding) -> str:
    return FINDING_KINDS[type(finding)]


def order_findings(
    orders: Iterable[DraftOrder],
    session: Iterable[DraftOrder],
    suspicion: Suspicion | None,
    confirmation: Confirmation | None,
    running_from_day: int,
) -> list[OrderFinding]:
    """The cards the ``orders`` under review deserve (newly selected ones for order-select;
    all for order-sign), at most one of each kind. ``session`` is every order of the session:
    an MRI covering the sacrum in it means the right test is being ordered, so X-ray and CT get
    no card (a lumbar-only MRI does not cover the sacrum, 7.5). ``running_from_day``: the day
    after Day 0 from which the plan itself may return to running (its return-to-running phase):
    from then on a running programme may be the plan, and the service says nothing."""
    orders = list(orders)
    found: list[OrderFinding] = []

    def add(kind: type, chosen: list[DraftOrder], about: Suspicion | Confirmation) -> None:
        if chosen:
            found.append(kind(tuple(chosen), about))

    if confirmation is not None:
        early = confirmation.days_since_day0 < running_from_day
        add(
            ConfirmedBsiWarning,
            [o for o in orders if o.kind is OrderKind.SI_INJECTION],
            confirmation,
        )
        if early:
            add(
                ConfirmedBsiWarning,
                [o for o in orders if o.kind is OrderKind.RUNNING],
                confirmation,
            )
        return found
    if suspicion is None:
        return found
    mri_in_session = any(o.kind is OrderKind.MRI and o.region != "lumbar" for o in session)
    if not mri_in_session and suspicion.mri_under_way is None:
        add(
            ImagingInstead,
            [o for o in orders if o.kind in (OrderKind.XRAY, OrderKind.CT)],
            suspicion,
        )
    treating = [
        o
        for o in orders
        if o.kind is OrderKind.SI_INJECTION or (o.kind is OrderKind.PHYSIO and o.si_reason)
    ]
    if treating:
        found.append(ConsiderBsiFirst(tuple(treating), suspicion, mri_in_session))
    return found


def evidence_keys(finding: OrderFinding, card_a_evidence: frozenset[str]) -> frozenset[str]:
    """What an order card stood on: card A's evidence (or the confirmed finding), and the kinds
    of the orders, so an override of the X-ray card does not silence the injection card."""
    return card_a_evidence | {f"order:{o.kind.value}" for o in finding.orders}


# ---------------------------------------------------------------------------- order text
# For orders sent with a local code and a name only. Region words as in brief 8.1b.
_I = re.IGNORECASE
_XRAY = re.compile(r"\b(x-?rays?|xr|radiograph\w*|plain films?|radiologic examination)\b", _I)
_CT = re.compile(r"\b(ct|computed tomography|cat scan)\b", _I)
_MRI = re.compile(r"\b(mr|mri|magnetic resonance)\b", _I)
_NOT_IMAGING = re.compile(r"\b(mra|mrcp|angiograph\w*|guidance|guided)\b", _I)
_REGIONS: tuple[tuple[Region, re.Pattern[str]], ...] = (
    ("si_joint", re.compile(r"\b(sacroiliac|SI[- ]joints?|SIJs?)\b", _I)),
    ("sacrum", re.compile(r"\b(sacrum|sacral|coccyx|sacrococcygeal)\b", _I)),
    ("pelvis", re.compile(r"\b(pelvis|pelvic)\b", _I)),
    ("lumbar", re.compile(r"\b(lumbar|lumbosacral|L-?spine|L[-/]?S spine)\b", _I)),
)
_INJECTION = re.compile(
    r"\b(inject\w*|block|steroid|infiltration|radiofrequency|RFA|ablation|neurotomy|"
    r"denervation|prolotherapy)\b",
    _I,
)
_SI_JOINT = _REGIONS[0][1]
_PHYSIO = re.compile(r"\b(physio\w*|physical therap\w*|PT (referral|eval\w*))\b", _I)
_RUNNING = re.compile(
    r"\b(running|jogging|run[/ -]walk|walk[/ -](run|jog)|jog[/ -]walk|return[- ]to[- ]run\w*|"
    r"plyometric\w*|jump(ing)? training|impact training|couch to 5k)\b",
    _I,
)
# Running in water is unloaded: encouraged from phase 1 (brief 10.1), not a running programme.
_WATER_RUNNING = re.compile(r"\b(deep[- ]water|aqua|pool|water)[- ](running|jogging)\b", _I)
_NEGATION = re.compile(r"\b(no|not|avoid\w*|without|stop|hold|defer\w*)\b", _I)
_NEGATED_AFTER = re.compile(r"^\W*(not yet|not|no|none|on hold|held|deferred|avoid\w*)\b", _I)
# Studies of another region that name the pelvis too: CT abdomen and pelvis is not a study of
# the sacrum (an abdominal or urinary question).
_OTHER_STUDY = re.compile(
    r"\b(abdomen|abdominal|abd|chest|renal|kidneys?|bladder|urogra\w*|enterogra\w*|"
    r"colonogra\w*)\b",
    _I,
)


def region_of(text: str) -> Region | None:
    for region, pattern in _REGIONS:
        if pattern.search(text):
            return region
    return None


def kind_from_text(text: str | None) -> tuple[OrderKind, Region | None]:
    """What an order's name says it is; OTHER when it names nothing this module reads."""
    if not text:
        return OrderKind.OTHER, None
    text = " ".join(text.split())[:300]
    region = region_of(text)
    imaging = not _NOT_IMAGING.search(text)
    if imaging and _MRI.search(text) and region is not None:
        return OrderKind.MRI, region
    if imaging and not _OTHER_STUDY.search(text):
        if _CT.search(text) and region is not None:
            return OrderKind.CT, region
        if _XRAY.search(text) and region is not None:
            return OrderKind.XRAY, region
    if _SI_JOINT.search(text) and _INJECTION.search(text):
        return OrderKind.SI_INJECTION, "si_joint"
    if _running(text):
        return OrderKind.RUNNING, None
    if _PHYSIO.search(text):
        return OrderKind.PHYSIO, None
    return OrderKind.OTHER, None


def _running(text: str) -> bool:
    """A running programme, not negated ("no running", "running: not yet") and not in water."""
    if _WATER_RUNNING.search(text):
        return False
    found = _RUNNING.search(text)
    if found is None:
        return False
    before = re.split(r"[,;.]|\bthen\b", text[: found.start()])[-1]
    after = text[found.end() :]
    return not (_NEGATION.search(before) or _NEGATED_AFTER.search(after))
