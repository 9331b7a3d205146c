"""Reading an MRI impression (``DiagnosticReport.conclusion``) for a sacral BSI (brief 8.3, 14.1).

When in doubt, say nothing: a report is POSITIVE only when one sentence of the impression
affirms, clearly and without hedging, a bone stress injury at the sacrum, and no other sentence
about the same side takes it back. Each sentence is read whole, before **and after** the finding:

- the indication, history, notes, technique and comparison sections, and questions ("evaluate
  for", "r/o"), are the question, not the answer: skipped;
- a negation before the finding ("no", "neg for", "nil", "without", "no evidence of" ... up to
  "but", "however", "except" or a new assertion such as "compatible with") or after it ("... is
  not demonstrated / not visualised / absent / excluded / negative") makes it NEGATED; "not seen
  on the prior radiographs" is not a negation;
- an injury called healed, healing, old, chronic, known, previously seen, resolved, unchanged,
  stable, improving, united, is an earlier injury: HISTORY (a risk factor, not a confirmation);
- edema or sclerosis put down to another cause is ATTRIBUTED: a cause that is never a runner's
  BSI (insufficiency, osteoporosis, metastasis, tumour, radiation, infection, pathological)
  anywhere in the sentence; a joint or spine cause (degenerative, arthropathy, sacroiliitis,
  enthesopathy, inflammatory, Modic, subchondral ...) when a connector introduces it ("likely",
  "compatible with", "due to"), when it qualifies the finding ("degenerative marrow edema"), or
  when the only finding is marrow edema, which many causes produce;
- any hedge ("possible", "likely", "favoured", "unlikely", "doubtful", "cannot exclude",
  "equivocal", "suspicious for", "may represent", "non-specific", "versus", "or" between causes,
  "?") makes it UNCERTAIN;
- each finding belongs to the nearest bone named: "femoral neck stress reaction, incidental
  sacral Tarlov cyst" and "stress fracture of the ilium, lateral to the sacral ala" are OTHER_SITE;
  the SI joint is not the sacrum, and a sacrum named as normal or spared is not the site.

A sentence that names no bone takes the site of the sentence before it ("Left sacral marrow
edema. This is likely degenerative."). Across sentences: a POSITIVE sentence that another
sentence about the same (or an unknown) side contradicts, or a report with an addendum or a
correction, is not POSITIVE; otherwise one POSITIVE sentence makes the report POSITIVE (and is
quoted), else the first of UNCERTAIN, ATTRIBUTED, NEGATED, HISTORY, OTHER_SITE found.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

from cds_service.clinical.facts import ReportReading, Side
from cds_service.clinical.text_rules import side_from_text, tidy, words_after

_I = re.IGNORECASE
QUOTE_LIMIT = 300
# Reading is bounded, so no text can stall the service: the first TEXT_LIMIT characters of a
# conclusion (an impression is a few hundred), and a sentence longer than SENTENCE_LIMIT is not
# a sentence a radiologist wrote: it is read as saying nothing (when in doubt, say nothing).
TEXT_LIMIT = 20_000
SENTENCE_LIMIT = 1_000
_WINDOW = 300  # characters around a finding that its cues may sit in
P, U, A, N, H, ELSEWHERE, S = (
    ReportReading.POSITIVE,
    ReportReading.UNCERTAIN,
    ReportReading.ATTRIBUTED,
    ReportReading.NEGATED,
    ReportReading.HISTORY,
    ReportReading.OTHER_SITE,
    ReportReading.SILENT,
)

# ---------------------------------------------------------------------------- sentences
# Section labels start a new sentence even mid-line ("Indication: ... Impression: ...").
_NOT_FINDINGS = (
    r"indications?|clinical (?:history|hx|indications?|information|question|details|notes?)|"
    r"history|hx|notes?|reason(?: for (?:exam|study|referral|request))?|requests?|referral|"
    r"questions?|comparison|technique|procedure|protocol"
)
_FINDINGS = r"impression|conclusions?|opinion|summary|findings|addend(?:um|a)|corrections?"
_SECTION_START = re.compile(rf"(?=\b(?:{_FINDINGS}|{_NOT_FINDINGS})\s*:)", _I)
_HEADER = re.compile(rf"^\s*(?:{_NOT_FINDINGS})\s*(?::|\s-\s|\s\u2013\s)", _I)
_LABEL = re.compile(rf"^\s*(?:(?:{_FINDINGS})\s*:\s*)+", _I)
_NUMBERING = re.compile(r"^\s*(?:\(?\d{1,2}[.)]|[-*\u2022])\s+")
# Dots that end no sentence: abbreviations, and the number of a list item ("1. Left ...").
_ABBREVIATION = re.compile(r"\b(vs|e\.g|i\.e|approx|cf|incl|pt|dr|no)\.", _I)
_LIST_NUMBER = re.compile(r"(?:(?<=^)|(?<=\n)|(?<=:)|(?<=[.;!?]))\s*\(?\d{1,2}[.)](?=\s)")
_SPLIT = re.compile(
    r"(?<=[.!;])\s+|(?<=\?)\s+(?=[A-Z0-9])|;|\n\s*\n|"
    r"\n(?=\s*(?:\(?\d{1,2}[.)]|[-*\u2022])\s)|(?<=[.!?:;])\n|"
    r"\s+(?=\(?\d{1,2}\)\s)"  # "1) ... 2) ..." on one line
)
_HOLD = "\x00"
# Radiology shorthand spelled out before reading (the quote keeps the report's own words).
_SHORTHAND = (
    (re.compile(r"\bc/w\b", _I), "consistent with"),
    (re.compile(r"\bw/o\b", _I), "without"),
    (re.compile(r"\bw/(?=\s)", _I), "with"),
    (re.compile(r"\br/o\b", _I), "rule out"),
    (re.compile(r"\bs/p\b", _I), "status post"),
    (re.compile(r"\bh/o\b", _I), "history of"),
    (re.compile(r"\be/o\b", _I), "evidence of"),
)


def impression_sentences(text: str) -> Iterator[str]:
    """The sentences of an impression. A line break ends a sentence only after punctuation or
    before a list item: reports wrap lines in the middle of sentences."""
    for section in impression_sections(text):
        yield from _sentences_of(section)


def impression_sections(text: str) -> list[str]:
    """The text cut before each section label ("Indication:", "Impression:" ...)."""
    return [part for part in _SECTION_START.split(tidy(text, TEXT_LIMIT)) if part and part.strip()]


def _sentences_of(section: str) -> Iterator[str]:
    held = _ABBREVIATION.sub(lambda m: m.group(0).replace(".", _HOLD), section)
    held = _LIST_NUMBER.sub(lambda m: m.group(0).replace(".", _HOLD), held)
    for part in _SPLIT.split(held):
        if part and part.strip():
            yield " ".join(part.replace(_HOLD, ".").split())


_CONCLUDING = re.compile(
    r"^\s*(?:impression|conclusions?|opinion|summary|addend(?:um|a)|corrections?)\b", _I
)


def finding_sentences(text: str) -> Iterator[str]:
    """The sentences of the sections that report findings. Where the text has an impression
    (conclusion, opinion, summary) it is read with its addenda, not the findings it sums up;
    an indication, history, notes, technique or comparison section is the question and the
    method, not the answer."""
    sections = [s for s in impression_sections(text) if not _HEADER.match(s)]
    concluding = [s for s in sections if _CONCLUDING.match(s)]
    for section in concluding or sections:
        yield from _sentences_of(section)


# ---------------------------------------------------------------------------- terms
_SPECIFIC = (
    r"stress[- ](?:fractures?|fx|reactions?|responses?|injur(?:y|ies))|bone stress injur(?:y|ies)|"
    r"fatigue fractures?|BSIs?|fracture lines?|"
    # fractures of weak bone: found so that they read as another cause (8.4)
    r"(?:insufficiency|pathologic(?:al)?|osteoporotic)(?:[- ]type)? fractures?"
)
_NONSPECIFIC = (
    r"(?:bone )?marrow (?:o?edema|edema-like signal|signal (?:abnormality|change)s?)|"
    r"o?edema-like (?:bone )?marrow signal|osseous o?edema|bone o?edema"
)
_WEAK = r"fractures?|fx"  # a fracture of unstated kind: never a BSI by itself
_INJURY = re.compile(
    rf"\b(?:(?P<specific>{_SPECIFIC})|(?P<nonspecific>{_NONSPECIFIC})|(?P<weak>{_WEAK}))\b", _I
)
_GRADE_ONLY = re.compile(r"^fracture lines?$", _I)  # says the grade, not whether it is a BSI

_SACRAL = re.compile(
    r"\b(sacrum|sacral|sacra|alae? of the sacrum)\b|\bS[1-5](?:\s*-\s*S?[1-5])?\s+"
    r"(?:vertebral\s+)?(?:body|segment)\b",
    _I,
)
_OTHER_BONE = re.compile(
    r"\b(ilium|iliac|femoral|femur|femora|pubic|pubis|ramus|rami|ischi\w*|acetabul\w*|coccyx|"
    r"coccygeal|lumbar|L[1-5]|pars|pedicles?|hips?|tibia\w*|metatars\w*|fibula\w*|calcane\w*|"
    r"navicular)\b",
    _I,
)
# Before the sacrum named: the finding is denied there ...
_DENIED_HERE = re.compile(
    r"\b(no|not|nil|neg|without|negative for|free of|spares|sparing|normal|unremarkable|"
    r"intact)\b(?:\s+\S+){0,3}\s*$",
    _I,
)
# ... or it is next to the sacrum, not in it.
_NEXT_TO = re.compile(
    r"\b(adjacent to|near|abutting|next to|bordering|outside|lateral to|medial to|close to|"
    r"towards?|opposite|extending to|extending toward)\b(?:\s+\S+){0,3}\s*$",
    _I,
)
_NORMAL_AFTER = re.compile(
    r"\b(normal|intact|unremarkable|spared|preserved|not involved|uninvolved|negative|clear)\b", _I
)
# Between two bones named together: one group ("the left ilium and sacral ala").
_SITE_JOIN = re.compile(
    r"^(?:[\s,/&]|\b(?:and|or|the|left|right|bilateral|L|R|ala|alae|wing|body|bodies|segment|"
    r"bone|bones|neck|of|side|sided|posterior|anterior|superior|inferior)\b)*$",
    _I,
)

# ---------------------------------------------------------------------------- cues
# Scope of a cue ends at these words (NegEx "termination terms").
_TERMINATION = re.compile(
    r"\b(but|however|although|though|except|whereas|while|yet|aside from|apart from|"
    r"other than|with the exception of)\b",
    _I,
)
# A new assertion starts here ("no fracture line, compatible with stress reaction"): a
# negation before it does not reach past it, unless it negates the connector itself ("not
# consistent with ...").
_ASSERTION = re.compile(
    r"\b(compatible with|consistent with|consistent w/|in keeping with|diagnostic of|"
    r"indicative of|representing|characteristic of|typical of)(?=\W)|\bc/w\b",
    _I,
)
_NEGATED_ASSERTION = re.compile(r"\b(not|no findings|nothing|without findings)\s*$", _I)
# Phrases that contain a negation word without negating the finding, blanked before reading.
_NOT_A_NEGATION = re.compile(
    r"\b(?:not|no(?:t)? longer|poorly|barely)\s+(?:well\s+|clearly\s+)?(?:seen|visible|evident|"
    r"apparent|demonstrated|identified|detected)\s+on\s+(?:the\s+)?(?:prior|previous|earlier|"
    r"outside|initial|recent|preceding|plain|comparison)?\s*(?:radiographs?|x-?rays?|CT|"
    r"films?|plain films?|studies|study|exams?|examination|imaging|scans?|bone scans?)\b|"
    r"\bno\s+(?:significant\s+|definite\s+)?(?:displacement|extension|callus|collapse|"
    r"cortical breach|soft tissue (?:mass|abnormality))\b|\bnon-?displaced\b|\bundisplaced\b|"
    r"\bwithout\s+(?:significant\s+|definite\s+)?(?:displacement|extension|collapse)\b",
    _I,
)
_UNCERTAIN_PHRASES = re.compile(
    r"\b(?:cannot|can\s?not|can'?t)\s+(?:be\s+)?(?:entirely\s+|completely\s+|definitively\s+)?"
    r"(?:excluded?|ruled? out)\b|\bnot\s+(?:be\s+)?(?:entirely\s+|completely\s+)?"
    r"(?:excluded|ruled out)\b|\bdifficult to (?:exclude|rule out)\b",
    _I,
)
_UNCERTAIN = re.compile(
    r"\b(possible|possibly|probable|probably|likely|unlikely|questionable|question of|"
    r"equivocal|indeterminate|suspicious|suspected|suspect|concern(?:ing)? for|worrisome|doubt|"
    r"doubtful|favou?rs?|favou?red|favou?ring|(?:may|might|could|would)\s+(?:be|represent|"
    r"reflect|indicate|relate|suggest|correspond)|versus|vs|differential|ddx|suggests?|"
    r"suggestive|suggesting|consider|presumed|presumably|uncertain|unclear|query|"
    r"cannot differentiate|indistinguishable|non-?specific|physiologic(?:al)?|insignificant|"
    r"not (?:clearly|definitely|definitively|thought to be (?:clinically )?significant|"
    r"significant)|of (?:no|little|doubtful|uncertain|unclear) (?:clinical )?significance)\b|\?",
    _I,
)
_QUESTION = re.compile(
    r"\b(r/o|rule out|to exclude|evaluate for|evaluation for|evaluation of|assess for|"
    r"assessment for|clinical concern for|eval for)\b",
    _I,
)
_NEGATION_BEFORE = re.compile(
    r"\b(no|not|nil|neg|negative|without|w/o|negative for|free of|absence of|absent|nor|"
    r"ruled out|excludes?|rather than|instead of)\b",
    _I,
)
# Searched in the first words after the finding (``_after``): no unbounded backtracking.
_NEGATION_AFTER = re.compile(
    r"\b(?:not|no longer) (?:been )?(?:demonstrated|seen|identified|present|evident|visible|"
    r"visuali[sz]ed|appreciated|appreciable|detected|noted|shown|observed|confirmed|apparent|"
    r"there|a feature)\b|\b(?:is|are|was|were) absent\b|\b(?:excluded|ruled out)\b|"
    r"[:\-\u2013] ?(?:none|nil|no evidence|negative|not seen|absent)\b|"
    r"\bnone (?:seen|identified|present)\b|\bnegative\b",
    _I,
)
_HISTORY_BEFORE = re.compile(
    r"(?<![-\w])(healed|healing|old|chronic|remote|prior|previous|previously|known|"
    r"history of|hx|h/o|s/p|status post|sequelae? of|resolved|resolving|resolution of|"
    r"consolidated|united|ununited|re-?demonstrated|again (?:seen|noted|demonstrated)|"
    r"persistent|persisting|residual|stable|unchanged|improving|improved|improvement in|"
    r"decrease in|decreasing|decreased|regressing|settling|similar)\b",
    _I,
)
# Between a history cue and the finding: the cue is about something else ("prior study, new").
_HISTORY_BROKEN = re.compile(
    r"\bnew\b|[,;]|\b(study|studies|exam|examination|imaging|MRI|MR|radiographs?|scans?|CT|"
    r"comparison)\b",
    _I,
)
_HISTORY_CUE = (
    r"(?:(?:has|have|had)\s+(?:since\s+)?(?:healed|resolved|consolidated|settled|regressed|"
    r"united|improved|decreased)|now healed|(?:is|are)\s+healed|healed|healing|consolidated|"
    r"resolved|resolving|settled|regressed|united|re-?demonstrated|again (?:seen|noted|"
    r"demonstrated)|unchanged|stable|no (?:significant )?(?:interval )?change|previously "
    r"(?:seen|described|demonstrated|noted|identified|diagnosed)|as before|decreased|improved|"
    r"improving|chronic|less conspicuous|similar to (?:the )?prior)"
)
_HISTORY_AFTER = re.compile(rf"\b{_HISTORY_CUE}\b", _I)
_ABSENT_AT_END = re.compile(r"\babsent\W*$", _I)
_HISTORY_WINDOW = 6  # words before the finding that a history cue may sit in
_AFTER_WORDS = 12  # words after the finding that a negation or history cue may sit in
# "marrow oedema at the (site of the) stress fracture": the second names where the first is.
_LOCATED_AT = re.compile(r"^(?:at|around|surrounding|about|of|within)\b", _I)
# "No other / further / new stress fracture": nothing besides, not a denial of the finding.
_BESIDES = re.compile(r"\b(other|further|additional|another|second|new|more)\b", _I)
# Mentions joined into one list ("marrow edema or fracture line ... is not seen").
_LIST_LINK = re.compile(r"^[\s,]*(?:or|and|nor|/)?\s*(?:a|an|the|any)?\s*$", _I)
_CONJUNCTION = re.compile(r"\b(or|and|nor)\b|/", _I)
# A sentence that names no bone but refers back to the one before.
_BACK_REFERENCE = re.compile(
    r"^\W*(?:this|these|it|they|findings?|appearances?|the (?:findings|appearances|above|"
    r"abnormality|oedema|edema)|no longer|now|has|have|which|likely|probably|possibly|"
    r"most likely)\b",
    _I,
)
_CORRECTION = re.compile(
    r"\b(addend(?:um|a)|corrections?|corrected|retract\w*|should read|disregard|erratum)\b", _I
)

# Another cause for the edema or sclerosis: never a runner's BSI, wherever it is named ...
_HARD_CAUSE = (
    r"metastas[ie]s|metastatic|malignan\w*|neoplas\w*|tumou?rs?|myeloma|lymphoma|lytic|"
    r"radiotherapy|radiation|irradiat\w*|osteoporo\w*|insufficiency|pathologic(?:al)?|"
    r"paget'?s?|infect\w*|osteomyelitis|septic"
)
# ... and joint or spine causes, when they are what the finding is put down to.
_SOFT_CAUSE = (
    r"degenerative|degeneration|arthropathy|arthritis|osteoarthritis|osteoarthrosis|"
    r"sacroiliitis|enthesopathy|enthesitis|enthesopathic|inflammatory|inflammation|"
    r"spondyloarthr\w*|ankylosing|subchondral|periarticular|reactive|traumatic|"
    r"post-?traumatic|contusion|bone bruise|modic|osteitis condensans|red marrow|"
    r"marrow reconversion|fibrous dysplasia|hemangioma|bone island"
)
_CAUSE = re.compile(rf"\b(?:(?P<hard>{_HARD_CAUSE})|(?P<soft>{_SOFT_CAUSE}))\b", _I)
_DIFFERENTIAL = re.compile(r"(?:\b(?:versus|vs|or)\b|/)\W*(?:\S+\s+){0,2}$", _I)
_CAUSE_NEGATED = re.compile(
    r"\b(no|not|without|w/o|negative for|no evidence of|rather than|instead of|absence of|"
    r"free of)\b(?:\s+\S+){0,3}\s*$",
    _I,
)
_CONNECTOR = re.compile(
    r"\b(likely|most likely|favou?red|favou?ring|compatible with|consistent with|in keeping with|"
    r"related to|due to|secondary to|reflect(?:s|ing)?|represent(?:s|ing)?|"
    r"suggest(?:s|ive of|ing)?|attributed to|attributable to|from|typical of|characteristic of|"
    r"in the setting of|probably|presumably|because of|caused by|those of|that of|c/w)\b",
    _I,
)
_FINDING_NOUN = re.compile(
    r"\b(o?edema|sclerosis|signal|change|changes|fracture|fractures|marrow|stress|origin|"
    r"etiology|aetiology|nature|type|pattern|appearance)\b",
    _I,
)


@dataclass(frozen=True)
class ImpressionReading:
    reading: ReportReading
    quote: str | None = None  # the POSITIVE (else UNCERTAIN) sentence
    history_quote: str | None = None  # a sentence describing an earlier or healed injury
    positive: str = ""  # the POSITIVE sentences (for the side of the injury)
    # The sentences the grade of the current injury may be read from: the positive ones and
    # those about no finding in particular ("Fredericson grade 4."), not a healed injury's nor
    # another bone's.
    grading: str = ""


@dataclass(frozen=True)
class _Sentence:
    text: str
    reading: ReportReading
    sacral: bool  # it is about the sacrum (named, implied, or taken from the sentence before)
    # It denies only a fracture (line): "No sacral fracture." beside "sacral marrow edema c/w
    # stress reaction" says which kind of injury, it does not take it back.
    denies_fracture_only: bool = False


_ORDER = (P, U, A, N, H, ELSEWHERE)
_CONTESTING = frozenset({U, A, N, H})


def read_impression(text: str | None, *, sacrum_study: bool = False) -> ImpressionReading:
    """How an MRI impression reads for a sacral BSI (module docstring), with the sentence that
    decided it. ``sacrum_study``: the report is of the sacrum alone (MR Sacrum), so a finding
    whose sentence names no bone at all is at the sacrum."""
    if not text:
        return ImpressionReading(S)
    read = _read_all(text, sacrum_study)
    first: dict[ReportReading, str] = {}
    for sentence in read:
        if sentence.reading is not S:
            first.setdefault(sentence.reading, _quote(sentence.text))
    found = ImpressionReading(
        S,
        history_quote=first.get(H),
        positive=" ".join(s.text for s in read if s.reading is P),
        grading=" ".join(_spelled(s.text) for s in read if s.reading in (P, S, U)),
    )
    positives = [s for s in read if s.reading is P]
    if positives:
        contested = [c for p in positives for c in _contesting(p, read)]
        if not contested and not _CORRECTION.search(text):
            return replace(found, reading=P, quote=first[P])
        reading = contested[0].reading if contested else U
        return replace(found, reading=reading, quote=first[P] if reading is U else None)
    for reading in _ORDER:
        if reading in first:
            return replace(found, reading=reading, quote=first[reading] if reading is U else None)
    return found


def _read_all(text: str, sacrum_study: bool) -> list[_Sentence]:
    out: list[_Sentence] = []
    previous_sacral = False
    for sentence in finding_sentences(text):
        read = _read_sentence(sentence, sacrum_study=sacrum_study, follows_sacral=previous_sacral)
        out.append(read)
        if read.reading is not S or read.sacral:
            previous_sacral = read.sacral
    return out


def _contesting(positive: _Sentence, read: list[_Sentence]) -> list[_Sentence]:
    """The sentences about the sacrum that take ``positive`` back: negated, healed, put down to
    another cause or hedged, on the same side or on a side not stated."""
    side = _side(positive.text)
    return [
        s
        for s in read
        if s is not positive
        and s.sacral
        and s.reading in _CONTESTING
        and not (s.reading is N and s.denies_fracture_only)
        and (side is None or _side(s.text) in (None, side))
    ]


def _side(text: str) -> Side | None:
    found = side_from_text(text)
    return found if found in (Side.LEFT, Side.RIGHT) else None


def _spelled(text: str) -> str:
    """Radiology shorthand written out ("c/w" -> "consistent with")."""
    for shorthand, spelled in _SHORTHAND:
        text = shorthand.sub(spelled, text)
    return text


def _quote(sentence: str) -> str:
    text = _NUMBERING.sub("", _LABEL.sub("", sentence)).strip()
    return text if len(text) <= QUOTE_LIMIT else text[: QUOTE_LIMIT - 1].rstrip() + "\u2026"


def _blank(text: str, pattern: re.Pattern[str]) -> str:
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


def _words_before(text: str, count: int) -> str:
    return " ".join(text[-_WINDOW:].split()[-count:])


def _read_sentence(sentence: str, *, sacrum_study: bool, follows_sacral: bool) -> _Sentence:
    if len(sentence) > SENTENCE_LIMIT:
        return _Sentence(sentence, S, sacral=False)
    body = _spelled(_NUMBERING.sub("", _LABEL.sub("", sentence)))
    uncertain_phrase = bool(_UNCERTAIN_PHRASES.search(body))
    text = _blank(_blank(body, _UNCERTAIN_PHRASES), _NOT_A_NEGATION)
    mentions = list(_INJURY.finditer(text))
    names_bone = bool(_SACRAL.search(text) or _OTHER_BONE.search(text))
    implied = not names_bone and (sacrum_study or (follows_sacral and _refers_back(text, mentions)))
    if not mentions:
        if implied and follows_sacral and _BACK_REFERENCE.match(text):
            return _Sentence(sentence, _cue_only(text, uncertain_phrase), sacral=True)
        return _Sentence(sentence, S, sacral=False)
    if _QUESTION.search(text[: mentions[0].start()]):
        return _Sentence(sentence, S, sacral=False)  # the question asked, not the answer
    groups = _bone_groups(text)
    sites = [_at_sacrum(groups, m, implied) for m in mentions]
    sacral = [m for m, at in zip(mentions, sites, strict=True) if at in ("sacrum", "denied")]
    if not sacral:
        elsewhere = "elsewhere" in sites
        return _Sentence(sentence, ELSEWHERE if elsewhere else S, sacral=False)
    states = _states(text, mentions)
    own = {
        id(m): "negated" if site == "denied" and state == "affirmed" else state
        for m, state, site in zip(mentions, states, sites, strict=True)
    }
    affirmed = [m for m in sacral if own[id(m)] == "affirmed"]
    if not affirmed:
        if all(_BESIDES.search(_words_before(text[: m.start()], 2)) for m in sacral):
            return _Sentence(sentence, S, sacral=True)  # "no other stress fracture"
        reading = H if any(own[id(m)] == "history" for m in sacral) else N
        fracture_only = all(m.group("weak") or _GRADE_ONLY.match(m.group(0)) for m in sacral)
        return _Sentence(sentence, reading, sacral=True, denies_fracture_only=fracture_only)
    specific_negated = any(
        m.group("specific") and not _GRADE_ONLY.match(m.group(0)) and own[id(m)] == "negated"
        for m in sacral
    )
    if all(m.group("nonspecific") for m in affirmed) and specific_negated:
        # "marrow edema without stress fracture": not called a BSI
        return _Sentence(sentence, N, sacral=True)
    cause = _attribution(text, affirmed)
    if cause == "attributed":
        return _Sentence(sentence, A, sacral=True)
    if cause == "differential" or uncertain_phrase or _UNCERTAIN.search(text):
        return _Sentence(sentence, U, sacral=True)
    if all(m.group("weak") or _GRADE_ONLY.match(m.group(0)) for m in affirmed):
        return _Sentence(sentence, U, sacral=True)  # a fracture (line) alone: of what kind?
    return _Sentence(sentence, P, sacral=True)


def _refers_back(text: str, mentions: list[re.Match[str]]) -> bool:
    """A sentence that names no bone is about the sacrum of the sentence before when it refers
    back to it, or when it names a finding without a site ("the marrow oedema has decreased")."""
    return bool(_BACK_REFERENCE.match(text) or mentions)


def _cue_only(text: str, uncertain_phrase: bool) -> ReportReading:
    """A sentence about the finding before it, without naming one: "This has healed since the
    prior study.", "No longer seen.", "This is likely degenerative."."""
    if _HISTORY_AFTER.search(text):
        return H
    if _NEGATION_AFTER.search(text) or re.match(r"^\W*no longer\b", text, _I):
        return N
    cause = _CAUSE.search(text)
    if cause is not None and not _CAUSE_NEGATED.search(text[: cause.start()][-60:]):
        return A
    if uncertain_phrase or _UNCERTAIN.search(text):
        return U
    return S


Site = str  # "sacrum" | "denied" (the sacrum named to deny it) | "elsewhere" | "none"


def _at_sacrum(groups: list[tuple[int, int, Site]], mention: re.Match[str], implied: bool) -> Site:
    """Where the finding is: the nearest bone named decides (a group of bones named together
    counts as one: "the left ilium and sacral ala"; ``groups`` from ``_bone_groups``); "none"
    when no bone is named and the sacrum is not implied."""
    if not groups:
        return "sacrum" if implied else "none"

    def distance(group: tuple[int, int, Site]) -> int:
        start, end, _ = group
        if end <= mention.start():
            return mention.start() - end
        if start >= mention.end():
            return start - mention.end()
        return 0

    nearest = min(groups, key=distance)
    return nearest[2]


_SITE_RANK = {"sacrum": 2, "denied": 1, "elsewhere": 0}


def _bone_groups(text: str) -> list[tuple[int, int, Site]]:
    """(start, end, site) of each group of bones named together."""
    named: list[tuple[int, int, Site]] = []
    for m in _SACRAL.finditer(text):
        head = text[: m.start()][-60:]
        site: Site = (
            "elsewhere"
            if _NEXT_TO.search(head)
            else "denied"
            if _DENIED_HERE.search(head) or _NORMAL_AFTER.search(words_after(text[m.end() :], 4))
            else "sacrum"
        )
        named.append((m.start(), m.end(), site))
    named += [(m.start(), m.end(), "elsewhere") for m in _OTHER_BONE.finditer(text)]
    named.sort()
    groups: list[tuple[int, int, Site]] = []
    for start, end, site in named:
        between = text[groups[-1][1] : start] if groups else ""
        if groups and len(between) <= 60 and _SITE_JOIN.match(between):
            g_start, _, g_site = groups[-1]
            groups[-1] = (g_start, end, max(g_site, site, key=_SITE_RANK.__getitem__))
        else:
            groups.append((start, end, site))
    return groups


def _states(text: str, mentions: list[re.Match[str]]) -> list[str]:
    """ "affirmed", "negated" or "history" for each injury mention.

    Before the finding, a cue reaches it across the sentence up to a termination word ("but",
    "except" ...) or a new assertion ("compatible with"). After the finding, a cue ("... is not
    seen", "... has healed") is about the nearest finding before it, and the findings listed
    with it ("marrow edema or fracture line is not seen")."""
    states = ["affirmed"] * len(mentions)
    for i, m in enumerate(mentions):
        before = _scope_before(text[max(0, m.start() - _WINDOW) : m.start()])
        if before is None or _NEGATION_BEFORE.search(before):
            states[i] = "negated"
        window = _words_before(before if before is not None else text[: m.start()], _HISTORY_WINDOW)
        cues = list(_HISTORY_BEFORE.finditer(window))
        if cues and not _HISTORY_BROKEN.search(window[cues[-1].end() :]):
            states[i] = "history"
    for i, m in enumerate(mentions):
        following = mentions[i + 1].start() if i + 1 < len(mentions) else len(text)
        tail = text[m.end() : min(following, m.end() + _WINDOW)]
        stop = _TERMINATION.search(tail)
        after = words_after(tail[: stop.start()] if stop else tail, _AFTER_WORDS)
        # "absent" closing the sentence is about the finding before it; closing the gap to
        # the next finding it is about that one ("with absent fracture line").
        closes = stop is None and following == len(text) and _ABSENT_AT_END.search(after)
        state = (
            "history"
            if _HISTORY_AFTER.search(after)
            else "negated"
            if _NEGATION_AFTER.search(after) or closes
            else None
        )
        if state is None:
            continue
        for j in _list_of(text, mentions, i):
            if states[j] != "history":
                states[j] = state
    for i in range(1, len(mentions)):
        link = text[mentions[i - 1].end() : mentions[i].start()]
        if (
            states[i - 1] != "affirmed"
            and len(link) <= 60
            and _LOCATED_AT.match(link.strip())
            and len(link.split()) <= 6
        ):
            states[i] = states[i - 1]
    return states


def _scope_before(head: str) -> str | None:
    """The part of ``head`` a negation cue may sit in (back to a termination word or a new
    assertion); None when the assertion itself is negated ("not consistent with ...")."""
    cuts = [t.end() for t in _TERMINATION.finditer(head)]
    assertions = list(_ASSERTION.finditer(head))
    if assertions and (not cuts or assertions[-1].end() > cuts[-1]):
        last = assertions[-1]
        negated = _NEGATED_ASSERTION.search(_words_before(head[: last.start()], 3))
        return None if negated else head[last.end() :]
    return head[cuts[-1] :] if cuts else head


def _list_of(text: str, mentions: list[re.Match[str]], last: int) -> list[int]:
    """``last`` and the mentions listed with it just before ("A, B or C")."""
    members = [last]
    joined_by_conjunction = False
    for j in range(last - 1, -1, -1):
        link = text[mentions[j].end() : mentions[j + 1].start()]
        if len(link) > 40 or not _LIST_LINK.match(link):
            break
        if _CONJUNCTION.search(link):
            joined_by_conjunction = True
        elif not joined_by_conjunction:
            break  # "stress reaction, fracture line not seen": a comma alone is no list
        members.append(j)
    return members


def _attribution(text: str, affirmed: list[re.Match[str]]) -> str | None:
    """ "attributed" when the finding is put down to another cause (module docstring);
    "differential" when another cause is offered beside it ("stress reaction versus
    degenerative", "stress reaction or sacroiliitis"); else None."""
    only_edema = all(m.group("nonspecific") for m in affirmed)
    differential = False
    for cause in _CAUSE.finditer(text):
        head = text[: cause.start()]
        if _CAUSE_NEGATED.search(head[-60:]):
            continue
        if _DIFFERENTIAL.search(head[-40:]):
            differential = True
            continue
        if (
            cause.group("hard")
            or only_edema
            or _FINDING_NOUN.search(words_after(text[cause.end() :], 3))
            or _CONNECTOR.search(_words_before(head, 4))
        ):
            return "attributed"
    return "differential" if differential else None
