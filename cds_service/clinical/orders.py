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
    RUNNING = "running"  # a running programme (walk-run, sprints, return to running)
    HOPPING = "hopping"  # a hopping, jumping or plyometric programme
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
        if self.kind in (
            OrderKind.XRAY,
            OrderKind.CT,
            OrderKind.SI_INJECTION,
            OrderKind.RUNNING,
            OrderKind.HOPPING,
        ):
            return True
        return self.kind is OrderKind.PHYSIO and (self.si_reason or self.references_reason)


MriProposal = Literal["sacrum", "pelvis", "lumbosacral"]


def mri_proposal(suspicion: Suspicion, orders: Iterable[DraftOrder]) -> MriProposal:
    """The MRI an order card proposes: the pelvis for buttock or hip pain (14.5: it covers the
    sacrum and both femoral necks); the lumbar spine and sacrum when lumbar imaging was ordered
    (the question was lumbar) or the runner is under 18 (L5 spondylolysis, 14.5: a sacrum-only
    MRI may miss it); else the sacrum."""
    if suspicion.mri == "pelvis":
        return "pelvis"
    if suspicion.adolescent or any(o.region == "lumbar" for o in orders):
        return "lumbosacral"
    return "sacrum"


@dataclass(frozen=True)
class ImagingInstead:
    """X-ray or CT ordered for a patient card A suspects: suggest MRI instead. One finding for
    all such orders of the call (one card, one MRI)."""

    orders: tuple[DraftOrder, ...]
    suspicion: Suspicion

    @property
    def mri(self) -> MriProposal:
        return mri_proposal(self.suspicion, self.orders)


@dataclass(frozen=True)
class ConsiderBsiFirst:
    """SI-joint injection or physiotherapy for SI-joint pain, for a patient card A suspects."""

    orders: tuple[DraftOrder, ...]
    suspicion: Suspicion
    # No MRI is proposed: one is in the session, or the imaging card of the same answer
    # proposes it (one MRI per answer).
    mri_elsewhere: bool = False

    @property
    def mri(self) -> MriProposal:
        return mri_proposal(self.suspicion, self.orders)


@dataclass(frozen=True)
class ConfirmedInjection:
    """SI-joint injection for a confirmed sacral BSI: it treats joint pain, not the fracture."""

    orders: tuple[DraftOrder, ...]
    confirmation: Confirmation


@dataclass(frozen=True)
class ConfirmedLoad:
    """A running, hopping or jumping programme for a confirmed sacral BSI. ``early``: some
    order comes before the plan's own phase for it (hops from phase 3, running from phase 4),
    a warning; otherwise a reminder that it starts only once the clinician clears it (14.4:
    the restriction ends on clearance, never on a date)."""

    orders: tuple[DraftOrder, ...]
    confirmation: Confirmation
    early: bool


OrderFinding = ImagingInstead | ConsiderBsiFirst | ConfirmedInjection | ConfirmedLoad

FINDING_KINDS: dict[type, str] = {
    ImagingInstead: "order_imaging",
    ConsiderBsiFirst: "order_si_treatment",
    ConfirmedInjection: "order_confirmed_injection",
    ConfirmedLoad: "order_confirmed_load",
}


def finding_kind(finding: OrderFinding) -> str:
    return FINDING_KINDS[type(finding)]


@dataclass(frozen=True)
class LoadWindows:
    """Days after Day 0 from which the rehab plan itself allows low-level hops (its phase 3)
    and running (its phase 4), once the clinician clears them."""

    hopping_from_day: int
    running_from_day: int

    def early(self, order: DraftOrder, days_since_day0: int) -> bool:
        start = self.running_from_day if order.kind is OrderKind.RUNNING else self.hopping_from_day
        return days_since_day0 < start


def order_findings(
    orders: Iterable[DraftOrder],
    session: Iterable[DraftOrder],
    suspicion: Suspicion | None,
    confirmation: Confirmation | None,
    windows: LoadWindows,
) -> list[OrderFinding]:
    """The cards the ``orders`` under review deserve (newly selected ones for order-select;
    all for order-sign), at most one of each kind. ``session`` is every order of the session:
    an MRI covering the sacrum in it means the right test is being ordered, so X-ray and CT get
    no card (a lumbar-only MRI does not cover the sacrum, 7.5)."""
    orders = list(orders)
    found: list[OrderFinding] = []
    if confirmation is not None:
        injections = [o for o in orders if o.kind is OrderKind.SI_INJECTION]
        if injections:
            found.append(ConfirmedInjection(tuple(injections), confirmation))
        load = [o for o in orders if o.kind in (OrderKind.RUNNING, OrderKind.HOPPING)]
        if load:
            early = any(windows.early(o, confirmation.days_since_day0) for o in load)
            found.append(ConfirmedLoad(tuple(load), confirmation, early))
        return found
    if suspicion is None:
        return found
    mri_in_session = any(o.kind is OrderKind.MRI and o.region != "lumbar" for o in session)
    imaging = [o for o in orders if o.kind in (OrderKind.XRAY, OrderKind.CT)]
    if imaging and not mri_in_session and suspicion.mri_under_way is None:
        found.append(ImagingInstead(tuple(imaging), suspicion))
    treating = [
        o
        for o in orders
        if o.kind is OrderKind.SI_INJECTION or (o.kind is OrderKind.PHYSIO and o.si_reason)
    ]
    if treating:
        found.append(ConsiderBsiFirst(tuple(treating), suspicion, mri_in_session or bool(found)))
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
_LUMBOSACRAL = re.compile(r"\b(lumbosacral|L[-/]?S spine|lumbar and sacral)\b", _I)
_INJECTION = re.compile(
    r"\b(inject\w*|block|steroid|infiltration|radiofrequency|RFA|ablation|neurotomy|"
    r"denervation|prolotherapy)\b",
    _I,
)
_SI_JOINT = _REGIONS[0][1]
_PHYSIO = re.compile(r"\b(physio\w*|physical therap\w*|PT (referral|eval\w*))\b", _I)
_RUNNING = re.compile(
    r"\b(running|jogging|run[/ -]walk|walk[/ -](run|jog)|jog[/ -]walk|return[- ]to[- ]run\w*|"
    r"graded run\w*|run(ning)? program(me)?s?|sprint\w*|couch to 5k)\b",
    _I,
)
_HOPPING = re.compile(
    r"\b(hop|hops|hopping|jump\w*|plyometric\w*|skipping rope|bounding|impact training)\b", _I
)
# Running in water is unloaded: encouraged from phase 1 (brief 10.1), not a running programme;
# nor are running shoes or a gait analysis.
_NOT_LOADING = re.compile(
    r"\b((deep[- ]?|under)?water|aqua|pool|anti-?gravity|alter-?g)\b|"
    r"\brunning (shoes?|footwear|gait|analysis|assessment)\b|\bgait analysis\b",
    _I,
)
_NEGATION = re.compile(r"\b(no|not|avoid\w*|without|stop|hold|defer\w*)\b", _I)
_NEGATED_AFTER = re.compile(r"^\W*(not yet|not|no|none|on hold|hold|held|deferred|avoid\w*)\b", _I)
# Studies of another region that name the pelvis too: CT abdomen and pelvis is not a study of
# the sacrum (an abdominal or urinary question).
_OTHER_STUDY = re.compile(
    r"\b(abdomen|abdominal|abd|chest|renal|kidneys?|bladder|urogra\w*|enterogra\w*|"
    r"colonogra\w*|abdo|stone\w*|stonogram|KUB|urolog\w*)\b",
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
        # An MRI of the lumbosacral spine covers the sacrum (8.1b), unlike a lumbar-only one.
        return OrderKind.MRI, "sacrum" if _LUMBOSACRAL.search(text) else region
    if imaging and not _OTHER_STUDY.search(text):
        if _CT.search(text) and region is not None:
            return OrderKind.CT, region
        if _XRAY.search(text) and region is not None:
            return OrderKind.XRAY, region
    if _SI_JOINT.search(text) and _INJECTION.search(text):
        return OrderKind.SI_INJECTION, "si_joint"
    load = _loading(text)
    if load is not None:
        return load, None
    if _PHYSIO.search(text):
        return OrderKind.PHYSIO, None
    return OrderKind.OTHER, None


def _loading(text: str) -> OrderKind | None:
    """A running or hopping programme, not negated ("no running", "running: not yet"), not in
    water, not about shoes or gait."""
    if _NOT_LOADING.search(text):
        return None
    for kind, pattern in ((OrderKind.RUNNING, _RUNNING), (OrderKind.HOPPING, _HOPPING)):
        found = pattern.search(text)
        if found is None:
            continue
        before = re.split(r"[,;.]|\bthen\b", text[: found.start()])[-1]
        after = text[found.end() :]
        if not (_NEGATION.search(before) or _NEGATED_AFTER.search(after)):
            return kind
    return None
