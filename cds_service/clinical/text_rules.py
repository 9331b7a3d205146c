"""Text rules of the brief (4.3, 5.2, 6, 8.3, 8.5): regular expressions on word boundaries,
case-insensitive unless a single letter is the signal (``L SI pain``).

Free text never *qualifies* a condition (codes do that); it supplies runner evidence, the side of a
coded pain, risk factors that are only ever written down, and how an MRI conclusion reads.
Every function returns the matched words only, never the surrounding note.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from cds_service.clinical.facts import Grade, Polarity, Side, Strength, TextTopic

_I = re.IGNORECASE

# ---------------------------------------------------------------------------- sentences/clauses
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+|;\s*")
_CLAUSE_SPLIT = re.compile(r",|:|\s+but\s+|\s+however\s+|\s+although\s+|\s+now\s+", _I)


# Reading is bounded, so no record can stall the service: the first TEXT_LIMIT characters of a
# text (a note longer than that is read up to there), white space collapsed in one pass, and
# cues looked for within a window of the term.
TEXT_LIMIT = 10_000
_HEAD_LIMIT = 400


def tidy(text: str, limit: int = TEXT_LIMIT) -> str:
    """The first ``limit`` characters, each line's white space collapsed and runs of blank lines
    made one: no pattern then sees a long run of white space."""
    out: list[str] = []
    for line in text[:limit].splitlines():
        squeezed = " ".join(line.split())
        if squeezed or (out and out[-1]):
            out.append(squeezed)
    return "\n".join(out)


def words_after(text: str, count: int) -> str:
    """The first ``count`` words of ``text`` (looked at no further than 300 characters)."""
    return " ".join(text[:300].split()[:count])


def sentences(text: str) -> Iterator[str]:
    for part in _SENTENCE_SPLIT.split(text):
        if part and part.strip():
            yield part


_SCOPE_SPLIT = re.compile(r"\s+(and|who|which|that|in|for)\s+", _I)
_SUBJECT_SPLIT = re.compile(r"\s+(and|but)\s+|;", _I)
_WINDOW_WORDS = 4


def _after_last(split: re.Pattern[str], head: str) -> str:
    """``head`` from the end of the last match of ``split`` (all of it when none matches)."""
    head = head[-_HEAD_LIMIT:]
    cuts = [m.end() for m in split.finditer(head)]
    return head[cuts[-1] :] if cuts else head


def _clause_before(sentence: str, position: int) -> str:
    """The part of the sentence's clause that comes before ``position``."""
    return _after_last(_CLAUSE_SPLIT, sentence[:position])


def _cue_window(sentence: str, position: int, *, narrow: bool = True) -> str:
    """Where a negation cue must sit to apply to the term at ``position`` (NegEx-like): the same
    clause, at most four words before the term, and (``narrow``, for notes about a person) not
    across "and"/"who"/"in"."""
    head = _clause_before(sentence, position)
    if narrow:
        head = _after_last(_SCOPE_SPLIT, head)
    return " ".join(head.split()[-_WINDOW_WORDS:])


def _after_window(text: str, words: int = 5) -> str:
    """The first few words after a term, up to the end of its clause, for postfix cues
    ("... is not seen", "...: none")."""
    return " ".join(re.split(r"[.;,]", text[:300], maxsplit=1)[0].split()[:words])


def _subject_before(sentence: str, position: int) -> str:
    """The text whose subject the term shares: the sentence before it, back to "and"/"but"."""
    return _after_last(_SUBJECT_SPLIT, sentence[:position])


def _mask(text: str, pattern: re.Pattern[str]) -> str:
    """Blank out false-positive phrases, keeping positions."""
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


# ---------------------------------------------------------------------------- cues
_FAMILY = re.compile(
    r"\b(mother|mom|mum|father|dad|parents?|sister|brother|siblings?|son|daughter|partner|wife|"
    r"husband|spouse|boyfriend|girlfriend|friends?|coach|roommate|family)\b",
    _I,
)
_FORMER = re.compile(r"\b(stopped|quit|former(ly)?|used to|no longer|gave up|retired from)\b", _I)
_DENIAL = re.compile(r"\b(denies|denied|never|not an?|doesn'?t|does not|isn'?t|is not)\b", _I)
_IGNORE = re.compile(
    r"\b(no|not|unable to|can'?t|cannot|avoid(s|ing)?|without|hold(ing)?|plans? to|planning to|"
    r"wants? to|would like to|hop(es|ing) to|considering|thinking (of|about))\b",
    _I,
)
# "parkrun volunteer", "marathon spectator": there, not running.
_ONLOOKER_AFTER = re.compile(
    r"\b(volunteer\w*|marshal\w*|spectat\w+|officials?|organi[sz]er\w*|timekeep\w*|cheer\w*|"
    r"medic(al)? (tent|volunteer))\b",
    _I,
)
# Intentions and onlookers, anywhere before the term in its clause: "thinking about signing up
# for a marathon next year", "parkrun volunteer", "watched the marathon".
_NOT_DOING = re.compile(
    r"\b(plans? to|planning|wants? to|would like to|hop(es|ing) to|considering|thinking (of|about)|"
    r"interested in|aims? to|intends? to|volunteer\w*|marshal\w*|spectat\w+|cheer\w*|"
    r"watch(es|ed|ing)?)\b",
    _I,
)
_NEGATION = re.compile(
    r"\b(no|not|denies|denied|never|without|negative for|no evidence of|free of|absent|"
    r"ruled out|rule out|r/o)\b",
    _I,
)

# ---------------------------------------------------------------------------- runner (4.3)
_RUNNER_FALSE = re.compile(
    r"\b(running|runny) nose\b|\bnose (is )?running\b|\brunning (a )?(fever|temperature|temp)\b|"
    r"\brunning (late|low|out( of)?|total|water|commentary|list|tab)\b|\bIV (is )?running\b|"
    r"\b(fluids?|drip|infusion|heparin) (is |are )?running\b|"
    r"\bup and running\b|\brun(ning)? (the )?labs?\b|\bthe runs\b|"
    r"\bruns in (the|his|her|their) family\b|\bkeeps? running into\b|\bfront[- ]?runners?\b|"
    r"\b(drove|drive|driving|moved|moving|flew|flying|travel(l)?ed|road[- ]trip(ped)?)\s+"
    r"cross[- ]country\b|\bcross[- ]country ski(ing|er|s)?\b|"
    r"\btreadmill (stress|exercise|ecg|ekg) test\b|"
    r"\b(stress|exercise) test on (a |the )?treadmill\b|"
    r"\b(dance|gaming|game|movie|tv|netflix|study|meeting|shopping|binge)[- ]marathon\b|"
    r"\$\s?\d+\s?k\b|\b(on|off) track\b|\bfast[- ]track\b|\btrack record\b|"
    r"\brunner'?s knee\b|\b(XC|cross[- ]country) ski(ing|er|ers|s)?( team)?\b|"
    r"\bmarathon\s+(session|meeting|surgery|surgeries|case|cases|operation|shift|day|call|"
    r"study|studying|clinic|night)s?\b|"
    # Running as an occupation or an errand, and other "runners" (14.6).
    r"\b(food|bank|drug|gun|rum|errand|court|mail|office|parts|delivery|kitchen|restaurant|bar|"
    r"bread|casino|floor|stock|runway|table|carpet|rug|sled|blade|bean|stair|drawer|film|set|"
    r"production|bookie'?s?)[- ]runners?\b|"
    r"\brunners?\s+(at|for|in|with)\s+(a|an|the|his|her|their)?\s*(\w+\s+)?(restaurant|bank|"
    r"law firm|firm|hotel|casino|hospital|kitchen|store|shop|warehouse|office|court|diner|"
    r"cafe|bar|pub|company|agency|studio|set)\b|"
    r"\b(works?|working|worked|job|employed|employment|hired)\s+(as\s+)?(a\s+)?runners?\b|"
    r"\brunner[- ]ups?\b|\brunner beans?\b|\b(drug|gun|rum)[- ]running\b|"
    r"\b(jogging|running|jog)\s+(strollers?|prams?|buggy|buggies|pushchairs?)\b|"
    r"\brunning\s+(errands?|a (business|company|restaurant|shop|store|meeting|clinic)|"
    r"(his|her|their) (own )?(business|company|restaurant|shop|store))\b",
    _I,
)
# Sports that make "XC" / "cross-country" something other than running.
_XC_WORDS = re.compile(r"\bXC\b|\bcross[- ]country\b", _I)
_OTHER_XC_SPORT = re.compile(
    r"\b(ski|skis|skiing|skier|mountain bik(e|es|ing)|MTB|cycling|bikes?|biking|riding|"
    r"equestrian)\b",
    _I,
)
# Stopping, or being unable to run, *because of* the pain is the classic story of a current runner
# (14.6), not of a former one.
_STOPPED_OR_UNABLE = re.compile(
    r"\b(stopped|quit|paused|halted|gave up|unable to|not able to|can'?t|cannot|could not|"
    r"couldn'?t|had to stop|has had to stop|forced to stop|no longer able to)\s+"
    r"(\w+\s+){0,2}?(running|jogging|run|jog|runs|training)\b",
    _I,
)
# Stopping *because of* the pain or injury is the typical presentation, not a former runner.
_STOPPED_FOR_PAIN = re.compile(
    r"\b(because of|due to|d/t|secondary to|since|from|with)\s+"
    r"(the\s+|his\s+|her\s+|their\s+|this\s+)?"
    r"([\w-]+\s+){0,3}(pain|injury|injuries|symptoms|fracture|ache|discomfort|LBP|sciatica|"
    r"niggle)\b",
    _I,
)
# "Marathon" as a place or a company (case matters: the town and the company are capitalised).
_RUNNER_FALSE_PLACE = re.compile(
    r"\bMarathon (County|Oil|Petroleum|Key|Health|Pharmacy|Hospital|Clinic|Street|St|Ave|Road)\b|"
    r"\bMarathon, (FL|Florida|WI|Wisconsin|TX|Texas|NY|New York|ON|Ontario|Greece|IA|Iowa)\b"
)
_FORMER_PHRASES = re.compile(
    r"\b(stopped|quit|gave up|no longer|retired from)\s+(competitive\s+|distance\s+)?"
    r"(running|jogging|runs|jogs|to run|to jog)\b|"
    r"(\b(former(ly)?( a)?|retired)\s+|\bex-|\bex\s+)"
    r"((half[- ]?)?marathon\s+|distance\s+|competitive\s+)?"
    r"(runner|jogger|marathoner)\b|\bused to\s+(run|jog)\b|"
    r"\b(denies|denied)\s+(any\s+)?(running|jogging|exercise|physical activity)\b|"
    r"\b(does not|doesn'?t|never)\s+(run|jog|exercise)\b|\b(is\s+)?not an?\s+runner\b",
    _I,
)
# Every runner pattern contains one of these words: text without any needs no further look.
_RUNNER_HINT = re.compile(
    r"run|jog|marathon|\bXC\b|country|track|mpw|mile|km|parkrun|\d\s?k\b|ultra|treadmill|"
    r"kilomet|exercise|physical activity|athlon|athlete|ironman|iron man|70\.3|training for",
    _I,
)
_RUNNING_WORD = re.compile(r"\b(run|runs|running|runner|runners|jog|jogs|jogging|jogger)\b", _I)


@dataclass(frozen=True)
class _RunnerPattern:
    name: str
    pattern: re.Pattern[str]
    strength: Strength
    needs: re.Pattern[str] | None = None  # another pattern the same sentence must contain


_RUNNER_PATTERNS = (
    _RunnerPattern(
        "runner",
        re.compile(
            r"\b(((half[- ]?)?marathon|ultra(marathon)?|trail|distance|long[- ]distance|"
            r"cross[- ]country|XC|track|road|competitive|collegiate|elite|recreational|"
            r"masters|amateur|avid|keen)[- ])?runners?\b",
            _I,
        ),
        Strength.STRONG,
    ),
    _RunnerPattern(
        "runs distance",
        re.compile(
            r"\bruns?\s+(about\s+|~\s*|approx\.?\s+)?\d+(\.\d+)?\s*(-\s*\d+\s*)?"
            r"(mi|miles?|km|kms|kilometers?|kilometres?|k)\b",
            _I,
        ),
        Strength.STRONG,
    ),
    _RunnerPattern(
        "running frequency",
        re.compile(
            r"\b(running|runs?|jogging|jogs?)\s+\d+\s*(-\s*\d+\s*)?(days?|x|times)\s*"
            r"(/|per|a|each)?\s*(wk|week)?\b",
            _I,
        ),
        Strength.STRONG,
    ),
    _RunnerPattern("jogging", re.compile(r"\b(jogs|jogging|joggers?)\b", _I), Strength.MODERATE),
    _RunnerPattern(
        "marathon",
        re.compile(r"\b(half[- ]?)?marathon(s|ers?)?\b|\bultra[- ]?marathon(s|ers?)?\b", _I),
        Strength.STRONG,
    ),
    _RunnerPattern(
        "ultra", re.compile(r"\bultra[- ]?(runs?|running|races?|trail)\b", _I), Strength.STRONG
    ),
    _RunnerPattern(
        "race distance",
        re.compile(r"\b(5|10|15|21|42|50|100)\s?k\s+(race|run|runs|races|training)\b", _I),
        Strength.MODERATE,
    ),
    _RunnerPattern("parkrun", re.compile(r"\bparkruns?\b", _I), Strength.MODERATE),
    _RunnerPattern(
        "multisport",
        re.compile(
            r"\b(tri|du)athletes?\b|\b(does|do|did|races|raced|racing|competes in|competing in|"
            r"completed|finished|trains for|training for|doing)\s+(a\s+|an\s+|the\s+)?"
            r"((sprint|olympic|half|full)[- ])?(tri|du)athlons?\b|"
            r"\b(half[- ])?iron\s?man\b(?!\s+(movie|film|suit))|\b70\.3\b",
            _I,
        ),
        Strength.MODERATE,
    ),
    _RunnerPattern(
        "run club",
        re.compile(r"\b(run|running|jogging|track|parkrun)\s+(club|crew|group|squad)s?\b", _I),
        Strength.MODERATE,
    ),
    _RunnerPattern(
        "running as a sport",
        re.compile(
            r"\b(trail|distance|long[- ]distance|road|competitive|recreational|treadmill|"
            r"endurance|cross[- ]country)\s+running\b|"
            r"\brunning\s+(club|team|group|coach|program(me)?|plan|shoes|mileage|volume|"
            r"training|season|career)\b|"
            r"\b(goes|go|went|going)\s+(for\s+(a\s+)?)?(run|runs|running|jogging|jog)\b|"
            r"\b(enjoys|likes|loves|does|started|resumed|began|took up|takes up)\s+"
            r"(running|jogging)\b|"
            r"\bruns\s+(daily|regularly|every\s+day|most\s+days|on\s+(a\s+|the\s+)?treadmill|"
            r"track|trails|competitively|recreationally)\b|"
            r"\b(sports?|activit(y|ies)|exercise|hobb(y|ies)|types?|exercise type|type of exercise)"
            r"\s*(:|include|includes|is|are)\s*(\w+\s*,\s*)*(running|jogging)\b|"
            r"\b(couch to 5k|couch-to-5k|c25k)\b|"
            r"\btraining for (a|an|the|her|his|their)\s+(first\s+|next\s+)?"
            r"(race|marathon|half|ultra|5k|10k|70\.3|iron\s?man|triathlon|duathlon)\b|"
            r"\bran (a|an|the|her|his|their)\s+(first\s+)?([\w'-]+\s+){0,3}"
            r"(marathon|half|race|5k|10k|ultra|relay)\b",
            _I,
        ),
        Strength.MODERATE,
    ),
    _RunnerPattern(
        "cross-country",
        re.compile(r"\bcross[- ]country\b", _I),
        Strength.STRONG,
        re.compile(r"\b(runners?|running|team|season|athletes?|races?|meets?|practice)\b", _I),
    ),
    _RunnerPattern(
        "XC",
        re.compile(r"\bXC\b"),
        Strength.STRONG,
        re.compile(r"\b(runners?|running|team|season|athletes?|races?|meets?|practice)\b", _I),
    ),
    _RunnerPattern(
        "track",
        re.compile(
            r"\btrack and field\b|\btrack[- ](athlete|team|practice|meet|season|runner)s?\b|"
            r"\bruns?\s+track\b",
            _I,
        ),
        Strength.STRONG,
    ),
    _RunnerPattern(
        "weekly mileage",
        re.compile(
            r"\b\d+\s*(-\s*\d+\s*)?(mpw|mi\s*/\s*wk|mi\s*/\s*week|km\s*/\s*wk|km\s*/\s*week|"
            r"miles?\s*(per\s+|a\s+|/\s*)(week|wk)|km\s*(per\s+|a\s+|/\s*)(week|wk)|"
            r"kilomet(er|re)s\s+(per|a)\s+week)\b|"
            r"\b(miles per week|mpw|km/week|weekly mileage|mileage)\b",
            _I,
        ),
        Strength.STRONG,
        _RUNNING_WORD,
    ),
)

# The code text of a numeric Observation that records running distance (R6, 14.6): "Running
# distance per week", "Weekly mileage"; not cycling, swimming, walking or driving distance.
_RUNNING_DISTANCE = re.compile(
    r"\b(run|runs|running|jog|jogging)\b.*\b(distance|mileage|miles|km|kilomet\w*|volume)\b|"
    r"\b(distance|mileage|miles|km|kilomet\w*)\b.*\b(run|runs|running|jog|jogging)\b|"
    r"\bmileage\b",
    _I,
)
_OTHER_DISTANCE = re.compile(
    r"\b(cycl\w*|bik\w*|swim\w*|walk\w*|driv\w*|row\w*|hik\w*|ski\w*|commut\w*|car|"
    r"vehicle|odometer)\b",
    _I,
)


def names_running_distance(text: str | None) -> bool:
    short = tidy(text or "", 200)
    return bool(short and _RUNNING_DISTANCE.search(short) and not _OTHER_DISTANCE.search(short))


# In the valueString of a coded exercise-activity Observation the code sets the context, so a
# bare "running" or "jogging" is enough.
_ACTIVITY_VALUE = re.compile(r"\b(run|runs|running|jog|jogs|jogging)\b", _I)


STOPPED_FOR_PAIN_RULE = "text:stopped for pain"
MILEAGE_RULE = "text:weekly mileage"


@dataclass(frozen=True)
class RunnerMention:
    polarity: Polarity
    strength: Strength
    phrase: str
    rule: str


def runner_mentions(text: str, *, activity_context: bool = False) -> list[RunnerMention]:
    """Runner evidence in free text, with negation, subject and false-positive rules applied.

    Mentions about someone else, future plans and plain negations ("no running for 6 weeks")
    are dropped; "stopped running", "former runner", "denies running" come back as FORMER.
    """
    found: list[RunnerMention] = []
    if not (activity_context or _RUNNER_HINT.search(text)):
        return found  # most text says nothing about running: one cheap scan decides
    text = tidy(text)
    other_xc_sport = bool(_OTHER_XC_SPORT.search(text))
    for sentence in sentences(text):
        masked = _mask(_mask(sentence, _RUNNER_FALSE), _RUNNER_FALSE_PLACE)
        if other_xc_sport:
            masked = _mask(masked, _XC_WORDS)
        stopped = _STOPPED_OR_UNABLE.search(masked)
        if (
            stopped is not None
            and _STOPPED_FOR_PAIN.search(sentence[stopped.end() : stopped.end() + 200])
            and not _FAMILY.search(_subject_before(sentence, stopped.start()))
        ):
            found.append(
                RunnerMention(
                    Polarity.CURRENT, Strength.MODERATE, stopped.group(0), STOPPED_FOR_PAIN_RULE
                )
            )
            masked = _mask(masked, _STOPPED_OR_UNABLE)
        former = _FORMER_PHRASES.search(masked)
        if former is not None:
            if not _FAMILY.search(_subject_before(sentence, former.start())) and not (
                _STOPPED_FOR_PAIN.search(sentence[former.end() : former.end() + 200])
            ):
                found.append(
                    RunnerMention(Polarity.FORMER, Strength.STRONG, former.group(0), "text:former")
                )
            masked = _mask(masked, _FORMER_PHRASES)
        patterns: list[_RunnerPattern] = list(_RUNNER_PATTERNS)
        if activity_context:
            patterns.append(
                _RunnerPattern("exercise activity text", _ACTIVITY_VALUE, Strength.STRONG)
            )
        for rp in patterns:
            if rp.needs is not None and not rp.needs.search(_mask(masked, rp.pattern)):
                continue
            for m in rp.pattern.finditer(masked):
                mention = _classify(sentence, m, rp)
                if mention is not None:
                    found.append(mention)
                    break
    return found


def _classify(sentence: str, m: re.Match[str], rp: _RunnerPattern) -> RunnerMention | None:
    before = _cue_window(sentence, m.start())
    phrase = m.group(0).strip()
    if _FAMILY.search(_subject_before(sentence, m.start())):
        return None
    if _FORMER.search(before) or _DENIAL.search(before):
        return RunnerMention(Polarity.FORMER, rp.strength, phrase, f"text:{rp.name}")
    if (
        _IGNORE.search(before)
        or _NOT_DOING.search(_clause_before(sentence, m.start()))
        or _ONLOOKER_AFTER.search(words_after(sentence[m.end() :], 3))
    ):
        return None
    return RunnerMention(Polarity.CURRENT, rp.strength, phrase, f"text:{rp.name}")


# ---------------------------------------------------------------------------- side (5.2)
_BILATERAL = re.compile(
    r"\b(bilateral(ly)?|bilat|both sides|both (sacroiliac|SI|SIJ|buttocks|glutes|sides of)|B/L|"
    r"L\s*>\s*R|R\s*>\s*L|L\s*=\s*R|left\s*>\s*right|right\s*>\s*left|"
    r"left and right|right and left|L\s*&\s*R)\b",
    _I,
)
_LEFT_WORD = re.compile(r"\b(left|lt)\b", _I)
_LEFT_NOT_SIDE = re.compile(
    r"\bleft\s+(work|home|school|early|the|hospital|clinic|town|after|before|for|without|"
    r"against|ama|a message|message|voicemail|over)\b|\bleft[- ]handed\b",
    _I,
)
_RIGHT_WORD = re.compile(r"\b(right|rt)\b", _I)
_RIGHT_NOT_SIDE = re.compile(
    r"\bright\s+(away|after|before|now|then|when|at|from|there|here|to\s+(be|the|refuse))\b|"
    r"\ball right\b|\bright\?|\bright[- ]handed\b",
    _I,
)
_SIDE_LETTER_TAIL = (
    r"(?=[ -](SI|SIJ|buttock|buttocks|side|sided|LBP|sacral|sacrum|gluteal|glute|hip|"
    r"low back|lower back|back|sciatica|leg|thigh)\b)"
)
_LEFT_LETTER = re.compile(
    r"(?<![A-Za-z0-9/])L" + _SIDE_LETTER_TAIL + r"|(?<![A-Za-z0-9/])L-sided\b|\(L\)|"
    r"\bon (the )?L\b(?![-/])"
)
_RIGHT_LETTER = re.compile(
    r"(?<![A-Za-z0-9/])R" + _SIDE_LETTER_TAIL + r"|(?<![A-Za-z0-9/])R-sided\b|\(R\)|"
    r"\bon (the )?R\b(?![-/])"
)
_CENTRAL = re.compile(r"\b(central|centrally|midline)\b", _I)
_UNILATERAL = re.compile(r"\b(unilateral|one[- ]sided|single[- ]sided)\b", _I)
# A clause that denies symptoms on a side says nothing about where the pain is.
_SIDE_NEGATED = re.compile(
    r"\b(no|denies|denied|without|not|negative|asymptomatic|normal|unremarkable|spared|"
    r"radiation to)\b",
    _I,
)
_SIDE_CLAUSES = re.compile(r"[,;.]|\s+but\s+|\s+however\s+|\s+while\s+|\s+whereas\s+", _I)


# Where the pain is: a side in a clause without one of these is about something else ("left
# ACL repair").
_PAIN_PLACE = re.compile(
    r"\b(back|lumbar|LBP|buttocks?|gluteal|glutes?|SI|SIJ|sacroiliac|sacral|sacrum|sciatica|hips?|"
    r"groin|pain|painful|ache|aching|sore|tender(ness)?|sided)\b",
    _I,
)


def side_from_text(text: str | None, *, about_pain: bool = False) -> Side | None:
    """LEFT, RIGHT, BILATERAL, UNILATERAL or CENTRAL as written in the text; None if silent.

    Traps handled: ``L4``, ``L5-S1``, ``LBP``, ``L-spine`` are lumbar, not left; ``R/O`` is "rule
    out", not right; ``S1`` is a level, not a side; "left work early" or "right-handed" is not a
    side; a clause that denies symptoms ("no radiation to the right leg", "R side asymptomatic")
    does not add its side.
    """
    if not text:
        return None
    text = tidy(text)
    if _BILATERAL.search(text):
        return Side.BILATERAL
    left = right = False
    for clause in _SIDE_CLAUSES.split(text):
        if not clause or _SIDE_NEGATED.search(clause):
            continue
        if about_pain and not _PAIN_PLACE.search(clause):
            continue
        left = left or bool(
            _LEFT_WORD.search(_mask(clause, _LEFT_NOT_SIDE)) or _LEFT_LETTER.search(clause)
        )
        right = right or bool(
            _RIGHT_WORD.search(_mask(clause, _RIGHT_NOT_SIDE)) or _RIGHT_LETTER.search(clause)
        )
    if left and right:
        return Side.BILATERAL
    if left:
        return Side.LEFT
    if right:
        return Side.RIGHT
    if _UNILATERAL.search(text):
        return Side.UNILATERAL
    if _CENTRAL.search(text):
        return Side.CENTRAL
    return None


# ---------------------------------------------------------------------------- sacrum / MRI text
_SACRUM = re.compile(
    r"\b(sacrum|sacral|sacra|ala of the sacrum)\b|\bS[1-3]\s+(vertebral\s+)?body\b", _I
)
_SACRUM_NEGATED = re.compile(r"\b(no|not|without|negative for|free of|spares|sparing)\b", _I)
_SACRUM_NORMAL = re.compile(
    r"\b(normal|intact|unremarkable|spared|preserved|not involved|uninvolved|negative)\b", _I
)
_MRI_WORD = re.compile(r"\b(MR|MRI|magnetic\s+resonance)\b", _I)
_MRI_EXCLUDE = re.compile(r"\b(MRA|MRCP|MR angiograph(y|ic)|angiogra(m|phy))\b", _I)
_SACRUM_REGION = re.compile(
    r"\b(sacrum|sacral|sacroiliac|SI joints?|SIJs?|pelvis|pelvic|lumbosacral|L[-/]?S spine)\b",
    _I,
)
_LUMBAR_REGION = re.compile(r"\b(lumbar|L-?spine)\b", _I)


_HIP_OR_BUTTOCK = re.compile(r"\b(buttocks?|gluteal|glutes?|hips?|groin|inguinal)\b", _I)
_HIP_NOT_PAIN = re.compile(
    r"\bhip\s+(hinges?|thrusts?|flexors?|abductors?|extensions?|bridges?)\b", _I
)


def names_hip_or_buttock(text: str | None) -> bool:
    """True if the text places the pain in the buttock, hip or groin (a clause that denies it,
    "no hip pain", does not count; nor do exercises such as "hip hinge")."""
    if not text or not _HIP_OR_BUTTOCK.search(text):
        return False
    text = tidy(text)
    masked = _mask(text, _HIP_NOT_PAIN)
    return any(
        clause and not _SIDE_NEGATED.search(clause) and _HIP_OR_BUTTOCK.search(clause)
        for clause in _SIDE_CLAUSES.split(masked)
    )


_HIP_GROIN_PAIN = re.compile(
    r"\b(hip|groin|inguinal) (pain|ache)\b|\bpain (in|of) (the )?((left|right|l|r) )?(hip|groin)\b",
    _I,
)


def names_hip_or_groin_pain(text: str | None) -> bool:
    """A diagnosis text for pain in the hip or groin ("Pain in left hip", "R groin pain")."""
    if not text:
        return False
    lower = text[:500].lower()
    if "hip" not in lower and "groin" not in lower and "inguinal" not in lower:
        return False  # most diagnoses: one look decides
    return bool(_HIP_GROIN_PAIN.search(" ".join(lower.split())))


def mentions_sacrum(text: str | None) -> bool:
    """True if the text names the sacral bone at all (the SI joint is not the sacrum)."""
    return bool(text and _SACRUM.search(text))


def _affirms_sacrum(sentence: str) -> bool:
    for site in _SACRUM.finditer(sentence):
        if _SACRUM_NEGATED.search(_cue_window(sentence, site.start())):
            continue
        if _SACRUM_NORMAL.search(_after_window(sentence[site.end() :], words=6)):
            continue
        return True
    return False


def names_sacrum(text: str | None) -> bool:
    """True if the text places something at the sacrum: it names the sacral bone, not as
    normal, intact or uninvolved ("Sacrum intact" and "no sacral involvement" are not sacral
    site evidence)."""
    return bool(text) and any(_affirms_sacrum(s) for s in sentences(tidy(text or "")))


def mri_region_from_text(text: str | None) -> str | None:
    """ "sacrum" | "lumbar" | "other" if the text names an MRI, else None."""
    if not text or not _MRI_WORD.search(text[:500]):
        return None  # most report and order names: not an MRI
    text = tidy(text, 500)
    if _MRI_EXCLUDE.search(text) or not _MRI_WORD.search(text):
        return None
    if _SACRUM_REGION.search(text):
        return "sacrum"
    if _LUMBAR_REGION.search(text):
        return "lumbar"
    return "other"


_FREDERICSON = re.compile(r"\bFredericson\s+(grade\s+)?(IV|III|II|I|[1-4])([ab])?\b", _I)
_KAEDING = re.compile(r"\bKaeding(-Miller)?\s+(grade\s+)?(IV|V|III|II|I|[1-5])\b", _I)
_NO_FRACTURE_LINE = re.compile(
    r"\b(no|without|w/o)\s+([\w-]+\s+){0,3}fracture lines?\b|"
    r"\bfracture lines?\s+(is\s+|was\s+|are\s+)?(not|none)\b|marrow o?edema without",
    _I,
)
_FRACTURE_LINE = re.compile(r"\bfracture lines?\b", _I)
_REACTION = re.compile(r"\bstress reaction\b", _I)
_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5}


def _grade_number(raw: str) -> int:
    upper = raw.upper()
    return _ROMAN[upper] if upper in _ROMAN else int(raw)


def grade_from_text(text: str | None) -> tuple[Grade | None, str | None]:
    """(reaction | fracture, the words that said so), from a conclusion (brief 8.5)."""
    if not text:
        return None, None
    text = tidy(text)
    m = _FREDERICSON.search(text)
    if m:
        number = _grade_number(m.group(2))
        label = f"Fredericson grade {number}{(m.group(3) or '').lower()}"
        return (Grade.FRACTURE if number == 4 else Grade.REACTION), label
    m = _KAEDING.search(text)
    if m:
        raw = m.group(3).upper()
        label = f"Kaeding-Miller grade {raw}"
        return (Grade.FRACTURE if _grade_number(raw) >= 3 else Grade.REACTION), label
    if _NO_FRACTURE_LINE.search(text):
        return Grade.REACTION, "no fracture line"
    if _FRACTURE_LINE.search(text):
        return Grade.FRACTURE, "fracture line"
    if _REACTION.search(text):
        return Grade.REACTION, "stress reaction"
    return None, None


# ---------------------------------------------------------------------------- risk text (6)
_TOPICS: tuple[tuple[TextTopic, re.Pattern[str], bool], ...] = (
    # (topic, pattern, apply negation/subject rules)
    (
        TextTopic.PRIOR_BSI,
        re.compile(
            r"\b(history of|hx of|h/o|prior|previous|past|old|healed|earlier)\s+(a\s+|an\s+)?"
            r"([\w-]+\s+){0,2}(stress fractures?|stress fx|stress reactions?|"
            r"bone stress injur(y|ies)|BSIs?)\b",
            _I,
        ),
        True,
    ),
    (
        TextTopic.MENSTRUAL,
        re.compile(
            r"\b(amenorrho?ea|oligomenorrho?ea|missed periods?|missing periods|"
            r"irregular (periods|menses|menstruation|cycles?)|absent (periods|menses)|"
            r"loss of (periods?|menses)|no periods?|menstrual (dysfunction|irregularit(y|ies)))\b",
            _I,
        ),
        True,
    ),
    (
        TextTopic.LOW_ENERGY,
        re.compile(
            r"\b(low energy availability|RED-?S|relative energy deficiency|disordered eating|"
            r"restrict(ing|s|ive)\s+(food|intake|calories|eating|diet)|calorie restriction|"
            r"eating disorder|anorexia( nervosa)?|bulimia|female athlete triad)\b",
            _I,
        ),
        True,
    ),
    (
        TextTopic.LOW_BMD,
        re.compile(
            r"\b(osteopenia|osteopenic|osteoporosis|low bone (mineral )?density|low BMD)\b", _I
        ),
        True,
    ),
    (
        TextTopic.PAIN_WITH_IMPACT,
        re.compile(
            r"\bpain(ful)?\s+(with|on|when|during|while|after)\s+(single[- ]leg\s+)?"
            r"(hopping|hops?|running|runs?|impact|jumping|jumps?|landing)\b|"
            r"\b(worse|worsens|worsened|worsening|aggravated|provoked|increases|increased)\s+"
            r"(with|on|by|when|during|after)\s+(running|runs?|hopping|hops?|impact|jumping)\b|"
            r"\bhop(ping)? test\s*[:,-]?\s*(is\s+|was\s+)?(positive|\+|painful)|"
            r"\bpositive\s+(single[- ]leg\s+)?hop(ping)?\s+test\b|"
            r"\bpainful\s+(single[- ]leg\s+)?hop|"
            r"\b(flamingo|FABER)\s+(test\s+)?(is\s+)?(positive|\+)|\bpositive\s+(flamingo|FABER)\b|"
            r"\b(sacral|sacrum)\s+tender(ness)?\b|\btender(ness)?\s+(over|of|on)\s+the\s+sacrum\b",
            _I,
        ),
        True,
    ),
    (
        TextTopic.TRAINING_INCREASE,
        re.compile(
            r"\bincreas(ed|ing|e in)\s+(his\s+|her\s+|their\s+|weekly\s+|running\s+|training\s+)*"
            r"(mileage|training|volume|running|miles|distance)\b|"
            r"\b(mileage|training|volume)\s+(increase|increased|jump|spike)\b|"
            r"\bramp(ed|ing)?\s+up\b|\bnew\s+(marathon\s+|training\s+|running\s+)?(plan|program(me)?)\b|"
            r"\bfrom\s+\d+\s+to\s+\d+\s*(mi|miles|km|mpw)\b|\b(doubled|upped)\s+(his\s+|her\s+)?"
            r"(mileage|training|volume)\b",
            _I,
        ),
        True,
    ),
    (
        TextTopic.INSIDIOUS_ONSET,
        re.compile(
            r"\b(gradual onset|gradually (worsening|increasing|came on)|insidious( onset)?|"
            r"no (known\s+|specific\s+|inciting\s+|recent\s+)?(injury|trauma|fall)|"
            r"without (any\s+)?(injury|trauma)|atraumatic|non-?traumatic|no inciting event)\b",
            _I,
        ),
        False,
    ),
    (
        TextTopic.POSTPARTUM,
        re.compile(
            r"\b(post-?partum|post-?natal|puerperium|gave birth|delivered\s+(\d+|one|two|three|"
            r"four|five|six|seven|eight|nine|ten|eleven|twelve)\s+(weeks?|months?)\s+ago|"
            r"(recent|recently had a)\s+"
            r"(delivery|childbirth|birth|baby|c-?section|caesarean|cesarean)|delivered\s+"
            r"(a|her|their)\s+(baby|son|daughter|child|twins)|(\d+|one|two|three|four|five|six|"
            r"seven|eight|nine|ten|eleven|twelve)\s+(weeks?|months?)\s+(post-?partum|after\s+"
            r"(delivery|giving birth|childbirth|the birth)))\b",
            _I,
        ),
        True,
    ),
    (
        TextTopic.LACTATION,
        re.compile(
            r"\b(breast-?\s?feeding|breastfeeds|lactating|lactation|nursing\s+(her|an?|the)\s+"
            r"(baby|infant|child|son|daughter|twins)|(pumping|expressing)\s+(breast\s?)?milk)\b",
            _I,
        ),
        True,
    ),
    (
        TextTopic.PREGNANT,
        re.compile(
            r"\b((is|currently|now)\s+pregnant|pregnant\s+(at|with)\s+|\d+\s*(weeks?|wks?)\s+"
            r"(pregnant|gestation|of\s+gestation|into\s+(her|the)\s+pregnancy)|"
            r"intrauterine pregnancy|(first|second|third)\s+trimester)",
            _I,
        ),
        True,
    ),
    (
        TextTopic.NOT_IMPROVING,
        re.compile(
            r"\b(not improv(ing|ed)|no improvement|failed (conservative|PT|physical therapy|"
            r"physiotherapy|physio)|despite (PT|physical therapy|physiotherapy|physio|treatment)|"
            r"persistent despite|refractory|not getting better)\b",
            _I,
        ),
        False,
    ),
)


# "Previous stress fracture was ruled out on MRI": the topic is denied after it is named.
_NEGATED_AFTER = re.compile(r"\b(ruled out|excluded|not confirmed|negative|denied)\b", _I)
_ANY_TOPIC = re.compile("|".join(f"(?:{pattern.pattern})" for _, pattern, _ in _TOPICS), _I)


def topic_mentions(text: str) -> list[tuple[TextTopic, str]]:
    """Risk-factor topics written in free text, once per topic, with the matched words."""
    found: dict[TextTopic, str] = {}
    if not _ANY_TOPIC.search(text):
        return []
    text = tidy(text)
    for sentence in sentences(text):
        for topic, pattern, guarded in _TOPICS:
            if topic in found:
                continue
            for m in pattern.finditer(sentence):
                if guarded and (
                    _FAMILY.search(_subject_before(sentence, m.start()))
                    or _NEGATION.search(_cue_window(sentence, m.start()))
                    or _NEGATED_AFTER.search(words_after(sentence[m.end() :], 6))
                ):
                    continue
                found[topic] = m.group(0)
                break
    return list(found.items())
