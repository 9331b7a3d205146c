"""Reading an MRI impression (``DiagnosticReport.conclusion``) for a sacral BSI (brief 8.3, 14.1).

When in doubt, say nothing: a report is POSITIVE only when one sentence of the impression
affirms, clearly and without hedging, a bone stress injury at the sacrum. Each sentence is read
whole, before **and after** the finding:

- the indication, history, technique and comparison sections, and questions ("evaluate for",
  "r/o"), are the question, not the answer: skipped;
- a negation before the finding ("no", "without", "negative for", "no evidence of" ... up to
  "but", "however", "except" ...) or after it ("... is not demonstrated / not seen / absent /
  excluded / ruled out") makes it NEGATED; "not seen on the prior radiographs" is not a negation;
- an injury called healed, healing, old, chronic, known, previously seen, resolved, unchanged,
  is an earlier injury: HISTORY (a risk factor, not a new confirmation);
- edema or sclerosis put down to another cause (degenerative, arthropathy, sacroiliitis,
  enthesopathy, inflammatory, insufficiency, tumour, infection, trauma ...) is ATTRIBUTED;
- any hedge in the sentence ("possible", "likely", "cannot exclude", "equivocal", "suspicious
  for", "may represent", "versus", "?") makes it UNCERTAIN;
- a site next to the sacrum ("adjacent to the sacrum"), a normal sacrum, or the SI joint alone
  is not the sacrum.

Across sentences: one POSITIVE sentence makes the report POSITIVE (and is quoted); otherwise
the first of UNCERTAIN, ATTRIBUTED, NEGATED, HISTORY found, else SILENT.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from cds_service.rules.facts import ReportReading

_I = re.IGNORECASE
QUOTE_LIMIT = 300

# ---------------------------------------------------------------------------- sentences
# Section labels start a new sentence even mid-line ("Indication: ... Impression: ...").
_SECTION = (
    r"impression|conclusions?|opinion|summary|findings|indications?|clinical (?:history|"
    r"indication|information|question|details)|history|reason for (?:exam|study|referral)|"
    r"comparison|technique|procedure|protocol"
)
_SECTION_START = re.compile(rf"(?=\b(?:{_SECTION})\s*:)", _I)
_HEADER = re.compile(
    r"^\s*(indications?|clinical (history|indication|information|question|details)|history|"
    r"reason for (exam|study|referral)|comparison|technique|procedure|protocol)\s*:",
    _I,
)
_LABEL = re.compile(rf"^\s*(?:(?:{_SECTION})\s*:\s*)+", _I)
_NUMBERING = re.compile(r"^\s*(?:\(?\d{1,2}[.)]|[-*\u2022])\s+")
# Dots that end no sentence: abbreviations, and the number of a list item ("1. Left ...").
_ABBREVIATION = re.compile(r"\b(vs|e\.g|i\.e|approx|cf|incl|pt|dr|no)\.", _I)
_LIST_NUMBER = re.compile(r"(?:(?<=^)|(?<=\n)|(?<=:)|(?<=[.;!?]))\s*\(?\d{1,2}[.)](?=\s)")
_SPLIT = re.compile(
    r"(?<=[.!;])\s+|(?<=\?)\s+(?=[A-Z0-9])|;|\n\s*\n|"
    r"\n(?=\s*(?:\(?\d{1,2}[.)]|[-*\u2022])\s)|(?<=[.!?:;])\n"
)
_HOLD = "\x00"


def impression_sentences(text: str) -> Iterator[str]:
    """The sentences of an impression. A line break ends a sentence only after punctuation or
    before a list item: reports wrap lines in the middle of sentences."""
    for section in impression_sections(text):
        yield from _sentences_of(section)


def impression_sections(text: str) -> list[str]:
    """The text cut before each section label ("Indication:", "Impression:" ...)."""
    return [part for part in _SECTION_START.split(text) if part and part.strip()]


def _sentences_of(section: str) -> Iterator[str]:
    held = _ABBREVIATION.sub(lambda m: m.group(0).replace(".", _HOLD), section)
    held = _LIST_NUMBER.sub(lambda m: m.group(0).replace(".", _HOLD), held)
    for part in _SPLIT.split(held):
        if part and part.strip():
            yield " ".join(part.replace(_HOLD, ".").split())


# ---------------------------------------------------------------------------- terms
_SPECIFIC = (
    r"stress[- ]fractures?|stress fx|stress reactions?|(?:bone )?stress injur(?:y|ies)|"
    r"fatigue fractures?|BSIs?|fracture lines?|"
    # fractures of weak bone: found so that they can be read as another cause (8.4)
    r"(?:insufficiency|pathologic(?:al)?|osteoporotic)(?:[- ]type)? fractures?"
)
_NONSPECIFIC = (
    r"(?:bone )?marrow (?:o?edema|edema-like signal|signal (?:abnormality|change)s?)|"
    r"o?edema-like (?:bone )?marrow signal|osseous o?edema|bone o?edema"
)
_INJURY = re.compile(rf"\b(?:(?P<specific>{_SPECIFIC})|(?P<nonspecific>{_NONSPECIFIC}))\b", _I)
_GRADE_ONLY = re.compile(r"^fracture lines?$", _I)  # says the grade, not whether it is a BSI

_SITE = re.compile(
    r"\b(sacrum|sacral|sacra|ala of the sacrum)\b|\bS[1-5](?:\s*-\s*S?[1-5])?\s+"
    r"(?:vertebral\s+)?(?:body|segment)\b",
    _I,
)
_SITE_NOT_HERE = re.compile(
    r"\b(no|not|without|negative for|free of|spares|sparing|adjacent to|near|abutting|"
    r"next to|bordering|outside|normal|unremarkable|intact)\b(?:\s+\S+){0,3}\s*$",
    _I,
)
# Another bone named: in a report of the sacrum alone, a finding without a site is sacral
# unless the sentence names one of these.
_OTHER_SITE = re.compile(
    r"\b(ilium|iliac|femoral|femur|pubic|pubis|ramus|rami|ischi\w*|acetabul\w*|coccyx|"
    r"coccygeal|lumbar|L[1-5]|hip|tibia\w*|metatars\w*|fibula\w*|calcane\w*|navicular)\b",
    _I,
)
_SITE_NORMAL_AFTER = re.compile(
    r"^\W*(?:\S+\s+){0,3}?(is\s+|are\s+|appears?\s+)?(normal|intact|unremarkable|spared|"
    r"preserved|not involved|uninvolved|negative|clear)\b",
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
    r"\b(compatible with|consistent with|in keeping with|diagnostic of|indicative of|"
    r"representing|characteristic of|typical of)\b",
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
    r"cortical breach|soft tissue (?:mass|abnormality))\b|\bnon-?displaced\b|"
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
    r"\b(possible|possibly|probable|probably|likely|questionable|question of|equivocal|"
    r"indeterminate|suspicious|suspected|suspect|concern(?:ing)? for|worrisome|"
    r"(?:may|might|could)\s+(?:be|represent|reflect|indicate|relate|suggest|correspond)|"
    r"versus|vs|differential|suggests?|suggestive|suggesting|consider|presumed|presumably|"
    r"uncertain|unclear|cannot differentiate|not (?:clearly|definitely|definitively))\b|\?",
    _I,
)
_QUESTION = re.compile(
    r"\b(r/o|rule out|to exclude|evaluate for|evaluation for|evaluation of|assess for|"
    r"assessment for|query|clinical concern for|eval for)\b",
    _I,
)
_NEGATION_BEFORE = re.compile(
    r"\b(no|not|without|negative for|free of|absence of|absent|nor|ruled out|excludes?)\b", _I
)
_NEGATION_AFTER = re.compile(
    r"^\W*(?:\S+\s+){0,8}?(?:(?:(?:is|are|was|were|has been|have been)\s+)?(?:not|no longer)\s+"
    r"(?:been\s+)?(?:demonstrated|seen|identified|present|evident|visible|appreciated|detected|"
    r"noted|shown|observed|there)\b|(?:is|are|was|were)\s+absent\b|absent\s*$|"
    r"(?:(?:has been|have been|is|are|was|were)\s+)?(?:excluded|ruled out)\b|:\s*none\b|"
    r"none\s+(?:seen|identified|present)\b|(?:is|are)\s+negative\b)",
    _I,
)
_HISTORY_BEFORE = re.compile(
    r"(?<![-\w])(healed|healing|old|chronic|remote|prior|previous|previously|known|"
    r"history of|hx of|h/o|sequelae? of|resolved|resolving|resolution of|consolidated|united|"
    r"ununited|redemonstrated|again (?:seen|noted|demonstrated)|persistent|residual)\b",
    _I,
)
# Between a history cue and the finding: the cue is about something else ("prior study, new").
_HISTORY_BROKEN = re.compile(
    r"\bnew\b|[,;]|\b(study|studies|exam|examination|imaging|MRI|MR|radiographs?|scans?|CT|"
    r"comparison)\b",
    _I,
)
_HISTORY_AFTER = re.compile(
    r"^\W*(?:\S+\s+){0,8}?(?:(?:has|have|had)\s+(?:healed|resolved|consolidated)|healed|healing|"
    r"is healing|consolidated|resolved|resolving|redemonstrated|again (?:seen|noted|"
    r"demonstrated)|unchanged|stable|no (?:significant )?(?:interval )?change|previously "
    r"(?:seen|described|demonstrated|noted|identified|diagnosed)|as before|decreased|improved|"
    r"improving)\b",
    _I,
)
_HISTORY_WINDOW = 5  # words before the finding that a history cue may sit in
# Mentions joined into one list ("marrow edema or fracture line ... is not seen").
_LIST_LINK = re.compile(r"^[\s,]*(?:or|and|nor|/)?\s*(?:a|an|the|any)?\s*$", _I)
_CONJUNCTION = re.compile(r"\b(or|and|nor)\b|/", _I)

# Another cause for the edema or sclerosis.
_CAUSE = re.compile(
    r"\b(degenerative|degeneration|arthropathy|arthritis|osteoarthritis|osteoarthrosis|"
    r"sacroiliitis|enthesopathy|enthesitis|enthesopathic|inflammatory|inflammation|"
    r"spondyloarthr\w*|ankylosing|insufficiency|osteoporotic|pathologic(?:al)?|metastas[ie]s|"
    r"metastatic|malignan\w*|neoplas\w*|tumou?r|myeloma|lymphoma|infection|infectious|"
    r"osteomyelitis|septic|radiation|post-?radiation|paget'?s?|hemangioma|bone island|modic|"
    r"subchondral|periarticular|reactive|traumatic|post-?traumatic|contusion|bone bruise|"
    r"osteitis condensans|red marrow|marrow reconversion|fibrous dysplasia)\b",
    _I,
)
_DIFFERENTIAL = re.compile(r"\b(versus|vs|or)\b\W*(?:\S+\s+){0,2}$", _I)
_CAUSE_NEGATED = re.compile(
    r"\b(no|not|without|negative for|no evidence of|rather than|instead of|absence of|"
    r"free of)\b(?:\s+\S+){0,3}\s*$",
    _I,
)
_CONNECTOR = re.compile(
    r"\b(likely|most likely|favou?red|favou?ring|compatible with|consistent with|in keeping with|"
    r"related to|due to|secondary to|reflect(?:s|ing)?|represent(?:s|ing)?|"
    r"suggest(?:s|ive of|ing)?|attributed to|attributable to|from|typical of|characteristic of|"
    r"in the setting of|probably|presumably|because of|caused by)\b",
    _I,
)
_FINDING_NOUN = re.compile(
    r"^[\s-]*(?:\S+\s+){0,2}?(o?edema|sclerosis|signal|change|changes|fracture|fractures|"
    r"marrow|stress|origin|etiology|aetiology|nature|type|pattern)\b",
    _I,
)


@dataclass(frozen=True)
class ImpressionReading:
    reading: ReportReading
    quote: str | None = None  # the POSITIVE (else UNCERTAIN) sentence
    history_quote: str | None = None  # a sentence describing an earlier or healed injury


_ORDER = (
    ReportReading.POSITIVE,
    ReportReading.UNCERTAIN,
    ReportReading.ATTRIBUTED,
    ReportReading.NEGATED,
    ReportReading.HISTORY,
)


def read_impression(text: str | None, *, sacrum_study: bool = False) -> ImpressionReading:
    """How an MRI impression reads for a sacral BSI (module docstring), with the sentence that
    decided it. ``sacrum_study``: the report is of the sacrum alone (MR Sacrum), so a finding
    whose sentence names no bone at all is at the sacrum."""
    if not text:
        return ImpressionReading(ReportReading.SILENT)
    first: dict[ReportReading, str] = {}
    for sentence in finding_sentences(text):
        reading = read_sentence(sentence, sacrum_study=sacrum_study)
        if reading is not ReportReading.SILENT:
            first.setdefault(reading, _quote(sentence))
    for reading in _ORDER:
        if reading in first:
            quote = first[reading] if reading in (_ORDER[0], _ORDER[1]) else None
            return ImpressionReading(reading, quote, first.get(ReportReading.HISTORY))
    return ImpressionReading(ReportReading.SILENT)


def positive_sentences(text: str | None, *, sacrum_study: bool = False) -> str:
    """The sentences of an impression that read POSITIVE (for the side of the injury)."""
    return " ".join(
        s
        for s in finding_sentences(text or "")
        if read_sentence(s, sacrum_study=sacrum_study) is ReportReading.POSITIVE
    )


def finding_sentences(text: str) -> Iterator[str]:
    """The sentences of the sections that report findings: a whole indication, history,
    technique or comparison section is the question and the method, not the answer."""
    for section in impression_sections(text):
        if not _HEADER.match(section):
            yield from _sentences_of(section)


def _quote(sentence: str) -> str:
    text = _NUMBERING.sub("", _LABEL.sub("", sentence)).strip()
    return text if len(text) <= QUOTE_LIMIT else text[: QUOTE_LIMIT - 1].rstrip() + "\u2026"


def _blank(text: str, pattern: re.Pattern[str]) -> str:
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


def _words_before(text: str, count: int) -> str:
    return " ".join(text.split()[-count:])


def read_sentence(sentence: str, *, sacrum_study: bool = False) -> ReportReading:
    """One sentence of an impression, read whole (module docstring)."""
    body = _NUMBERING.sub("", _LABEL.sub("", sentence))
    mentions = list(_INJURY.finditer(body))
    if not mentions:
        return ReportReading.SILENT
    if _QUESTION.search(body[: mentions[0].start()]):
        return ReportReading.SILENT  # the question asked, not the answer
    site = _sacral_site(body)
    if site is None:
        if not sacrum_study or _OTHER_SITE.search(body):
            return ReportReading.SILENT
    elif not site:
        return ReportReading.NEGATED  # "without sacral involvement", "adjacent to the sacrum"
    uncertain_phrase = bool(_UNCERTAIN_PHRASES.search(body))
    text = _blank(_blank(body, _UNCERTAIN_PHRASES), _NOT_A_NEGATION)
    states = _states(text, mentions)
    affirmed = [m for m, state in zip(mentions, states, strict=True) if state == "affirmed"]
    if not affirmed:
        return ReportReading.HISTORY if "history" in states else ReportReading.NEGATED
    specific_negated = any(
        m.group("specific") and not _GRADE_ONLY.match(m.group(0)) and state == "negated"
        for m, state in zip(mentions, states, strict=True)
    )
    if all(m.group("nonspecific") for m in affirmed) and specific_negated:
        return ReportReading.NEGATED  # "marrow edema without stress fracture": not called a BSI
    if _attributed(text, affirmed):
        return ReportReading.ATTRIBUTED
    if uncertain_phrase or _UNCERTAIN.search(text):
        return ReportReading.UNCERTAIN
    if all(_GRADE_ONLY.match(m.group(0)) for m in affirmed):
        return ReportReading.UNCERTAIN  # a fracture line alone does not say what kind
    return ReportReading.POSITIVE


def _states(text: str, mentions: list[re.Match[str]]) -> list[str]:
    """ "affirmed", "negated" or "history" for each injury mention.

    Before the finding, a cue reaches it across the sentence up to a termination word ("but",
    "except" ...) or a new assertion ("compatible with"). After the finding, a cue ("... is not
    seen", "... has healed") is about the nearest finding before it, and the findings listed
    with it ("marrow edema or fracture line is not seen")."""
    states = ["affirmed"] * len(mentions)
    for i, m in enumerate(mentions):
        before = _scope_before(text[: m.start()])
        if before is None or _NEGATION_BEFORE.search(before):
            states[i] = "negated"
        window = _words_before(before or text[: m.start()], _HISTORY_WINDOW)
        cues = list(_HISTORY_BEFORE.finditer(window))
        if cues and not _HISTORY_BROKEN.search(window[cues[-1].end() :]):
            states[i] = "history"
    for i, m in enumerate(mentions):
        following = mentions[i + 1].start() if i + 1 < len(mentions) else len(text)
        tail = text[m.end() : following]
        stop = _TERMINATION.search(tail)
        after = tail[: stop.start()] if stop else tail
        state = (
            "history"
            if _HISTORY_AFTER.search(after)
            else "negated"
            if _NEGATION_AFTER.search(after)
            else None
        )
        if state is None:
            continue
        for j in _list_of(text, mentions, i):
            if states[j] != "history":
                states[j] = state
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
        if not _LIST_LINK.match(link):
            break
        if _CONJUNCTION.search(link):
            joined_by_conjunction = True
        elif not joined_by_conjunction:
            break  # "stress reaction, fracture line not seen": a comma alone is no list
        members.append(j)
    return members


def _sacral_site(text: str) -> bool | None:
    """True when the sentence places something at the sacral bone; False when it names the
    sacrum only to say it is spared, normal, or next to the finding ("adjacent to the sacrum",
    "without sacral involvement"); None when it does not name it (the SI joint is not the
    sacrum)."""
    named = False
    for site in _SITE.finditer(text):
        named = True
        if _SITE_NOT_HERE.search(text[: site.start()][-60:]):
            continue
        if _SITE_NORMAL_AFTER.match(text[site.end() :]):
            continue
        return True
    return False if named else None


def _attributed(text: str, affirmed: list[re.Match[str]]) -> bool:
    """The finding is put down to another cause: a cause word (not itself negated) that a
    connector ("likely", "compatible with", "due to" ...) introduces, or that qualifies the
    finding ("degenerative marrow edema", "insufficiency fracture"), or any cause word when the
    only finding is marrow edema, which many causes produce."""
    only_edema = all(m.group("nonspecific") for m in affirmed)
    for cause in _CAUSE.finditer(text):
        head = text[: cause.start()]
        if _CAUSE_NEGATED.search(head[-60:]) or _DIFFERENTIAL.search(head[-40:]):
            continue  # "without sacroiliitis"; "stress reaction versus degenerative": a hedge
        if only_edema or _FINDING_NOUN.match(text[cause.end() :]):
            return True
        if _CONNECTOR.search(_words_before(head, 4)):
            return True
    return False
