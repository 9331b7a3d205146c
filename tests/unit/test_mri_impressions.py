"""Reading MRI impressions you would trust with a patient (brief 14.1): a corpus of impression
sentences as radiologists write them, each read on its own, each with the reading the brief
decides. Expected readings were set from the brief's rules, sentence by sentence, not from the
code's output.

POSITIVE only on a clear, affirmative, sacral sentence; negations before and after the finding,
other causes, healed or earlier injuries, hedges, other sites and the indication never are.
"""

from __future__ import annotations

import pytest

from cds_service.clinical.facts import ReportReading
from cds_service.clinical.report_text import impression_sentences, read_impression
from cds_service.clinical.text_rules import grade_from_text

P, U, A, N, H, OTHER, S = (
    ReportReading.POSITIVE,
    ReportReading.UNCERTAIN,
    ReportReading.ATTRIBUTED,
    ReportReading.NEGATED,
    ReportReading.HISTORY,
    ReportReading.OTHER_SITE,
    ReportReading.SILENT,
)

CORPUS: list[tuple[str, ReportReading]] = [
    # --- positive: clear, affirmative, at the sacrum
    (
        "Left sacral ala marrow edema on T1 and fluid-sensitive images with a short vertical "
        "fracture line: sacral stress fracture, Fredericson grade 4",
        P,
    ),
    ("Impression: right sacral stress reaction.", P),
    ("Fatigue fracture of the S2 body.", P),
    ("Left S1 vertebral body stress fracture.", P),
    ("Bone marrow oedema of the left sacrum consistent with bone stress injury.", P),
    ("Right sacral ala stress fracture; no displacement.", P),
    ("Left sacral stress fracture without displacement.", P),
    ("Nondisplaced stress fracture of the left sacral ala.", P),
    (
        "Marrow edema in the left sacral ala, not seen on the prior study, compatible with stress reaction.",
        P,
    ),
    ("Left sacral stress fracture, occult on radiographs, not seen on the prior radiographs.", P),
    (
        "No fracture line is seen but there is marrow edema in the left sacral ala compatible with a stress reaction.",
        P,
    ),
    ("Left sacral ala stress reaction, fracture line not seen.", P),
    ("Sacral ala marrow edema with no fracture line, compatible with stress reaction.", P),
    ("Compared with the prior study, new left sacral stress fracture.", P),
    ("Healed right sacral stress fracture and new left sacral stress reaction.", P),
    ("Left sacral stress fracture with mild L5-S1 degenerative disc disease.", P),
    ("Left sacral ala stress fracture without evidence of sacroiliitis.", P),
    ("1. Left sacral ala stress fracture.\n2. No hip effusion.", P),
    ("No abnormality other than a stress reaction of the right sacral ala.", P),
    # --- negated before the finding
    ("No sacral stress fracture.", N),
    ("No evidence of sacral stress reaction.", N),
    ("No marrow edema, fracture line or stress reaction in the sacrum.", N),
    ("Sacrum: no marrow edema or fracture.", N),
    ("Findings do not suggest a sacral stress fracture.", N),
    ("Not consistent with sacral stress fracture.", N),
    ("Negative for sacral stress injury.", N),
    ("No sacral stress fracture; degenerative changes of the SI joints.", N),
    ("Left sacral ala marrow edema without stress fracture.", N),
    ("Stress fracture of the left femoral neck without sacral involvement.", OTHER),
    # --- negated after the finding (the whole sentence is read)
    ("Marrow edema within the right sacral ala is not demonstrated.", N),
    ("Marrow edema in the left sacral ala\nis not demonstrated.", N),  # a wrapped line
    ("Sacral stress fracture was not demonstrated.", N),
    ("Stress reaction of the sacrum is not seen.", N),
    ("Sacral marrow edema or fracture line is not identified.", N),
    ("Marrow edema, fracture line or stress reaction of the sacrum is not present.", N),
    ("Sacral stress fracture excluded.", N),
    ("Sacral stress fracture is ruled out.", N),
    ("Sacral stress fracture: none.", N),
    ("Marrow edema of the sacral ala is absent.", N),
    # --- attributed to another cause
    (
        "Subchondral marrow edema and sclerosis along the left sacral ala at the SI joint, favored degenerative.",
        A,
    ),
    ("Marrow edema in the right sacral ala, likely degenerative.", A),
    ("Sacral marrow edema compatible with degenerative arthropathy of the SI joint.", A),
    ("Bilateral sacroiliitis with subchondral marrow edema on the sacral side.", A),
    (
        "Bone marrow edema in the sacral and iliac subchondral bone of the left SI joint, findings compatible with active sacroiliitis.",
        A,
    ),
    ("Marrow edema at the sacral enthesis, in keeping with enthesopathy.", A),
    ("Left sacral marrow edema, inflammatory in appearance (spondyloarthropathy).", A),
    ("Left sacral insufficiency fracture.", A),
    ("Sacral marrow edema due to metastatic disease.", A),
    # --- healed or earlier injury: history, not a new confirmation
    ("Healed left sacral stress fracture.", H),
    ("Interval healing of the previously seen left sacral stress fracture.", H),
    ("Old right sacral ala stress fracture with sclerosis.", H),
    ("Chronic sacral stress fracture.", H),
    ("Previously seen left sacral stress reaction has resolved.", H),
    ("History of sacral stress fracture 2023. Normal MRI.", H),
    ("Known left sacral stress fracture, unchanged.", H),
    ("Residual marrow edema at the site of the known left sacral stress fracture.", H),
    # --- uncertain: card A as if no MRI had been read
    ("Possible right sacral stress reaction.", U),
    ("Right sacral ala stress reaction cannot be excluded.", U),
    ("Sacral stress fracture cannot be entirely excluded.", U),
    ("Equivocal marrow edema in the left sacral ala; early stress reaction is possible.", U),
    ("Findings suspicious for a left sacral stress fracture.", U),
    ("Marrow edema in the left sacral ala may represent a stress reaction.", U),
    ("Findings likely represent a left sacral stress reaction.", U),
    ("Left sacral stress fracture?", U),
    ("Right sacral ala stress reaction versus degenerative change.", U),
    # --- another site, or the question asked
    ("Stress reaction of the iliac bone adjacent to the sacrum.", OTHER),
    ("Stress fracture of the left femoral neck. Sacrum normal.", OTHER),
    ("Stress fracture of the right pubic ramus.", OTHER),
    ("SI joint edema.", S),
    ("Fatigue fracture at S2.", S),  # a level alone is not a site
    ("Clinical indication: r/o sacral stress fracture. Impression: normal.", S),
    ("Evaluate for sacral stress fracture. Impression: normal MRI.", S),
    (
        "Indication: runner with left buttock pain, ? sacral stress fracture. Impression: no acute findings.",
        S,
    ),
    ("Normal study.", S),
]


@pytest.mark.parametrize(("sentence", "reading"), CORPUS, ids=[c[0][:60] for c in CORPUS])
def test_impression_reading(sentence: str, reading: ReportReading) -> None:
    assert read_impression(sentence).reading is reading


def test_impression_corpus_is_at_least_forty_sentences_of_every_kind() -> None:
    assert len(CORPUS) >= 40
    assert {r for _, r in CORPUS} == {P, U, A, N, H, OTHER, S}


# ---------------------------------------------------------------------------- review corpus
# A second corpus, written by a reviewer attacking the reader as a sports physician would (brief
# 14.1), in the styles radiologists use: abbreviations, capitals, British spelling, hedges,
# history, other bones, several sentences that change each other's meaning. NOT_P: anything but
# POSITIVE is acceptable (the brief asks only that it not be read as a sacral BSI).
NOT_P = "not positive"
REVIEW: list[tuple[str, ReportReading | str]] = [
    # ---- clear positives (abbreviations, caps, grades, British)
    ("R sacral ala stress fx.", P),
    ("L sacral ala marrow oedema c/w stress reaction.", P),
    ("Findings consistent w/ R sacral stress fracture.", P),
    ("IMPRESSION: 1. LEFT SACRAL ALA STRESS FRACTURE. 2. NO OTHER ABNORMALITY.", P),
    ("Fredericson grade 3 stress reaction of the right sacral ala.", P),
    ("Kaeding-Miller grade III left sacral stress fracture.", P),
    ("Grade 4b stress fracture, left sacral ala.", P),
    ("Bone stress injury of the left sacral ala (Fredericson grade 2).", P),
    ("Acute left sacral ala stress fracture with surrounding marrow oedema.", P),
    ("There is a new stress fracture of the right sacral ala.", P),
    (
        "Interval development of marrow oedema in the R sacral ala since 08/2026, in keeping with a new stress reaction.",
        P,
    ),
    ("Appearances are in keeping with a left sacral stress reaction.", P),
    ("Left S1 segment stress reaction.", P),
    (
        "Linear T1 hypointense fracture line in the left sacral ala with surrounding oedema: sacral stress fracture.",
        P,
    ),
    ("Right sacral ala stress reaction, no e/o sacroiliitis.", P),
    ("Left sacral fatigue fracture; no insufficiency pattern.", P),
    ("Left sacral stress fracture rather than metastasis.", P),
    ("Sacral stress fracture, no evidence of metastatic disease.", P),
    ("L SIJ mild sacroiliitis. R sacral ala stress reaction.", P),
    ("Stress reaction of the left ilium and sacral ala.", P),
    (
        "Left sacral stress reaction, Kaeding-Miller grade II. Additional finding: right femoral neck stress reaction (compression side).",
        P,
    ),
    ("SACRAL STRESS FRACTURE, LEFT ALA, FREDERICSON 4.", P),
    (
        "Marrow oedema in the left sacral ala without a fracture line, in keeping with a grade 3 stress reaction.",
        P,
    ),
    ("Healed R sacral stress fx; new L sacral ala stress reaction.", P),
    ("Left sacral stress response.", P),
    ("Undisplaced stress fracture of the left sacral ala.", P),
    ("Marrow oedema within the left sacral ala.", P),  # 8.3 positive wording
    ("Left sacral ala marrow oedema c/w stress reaction, no fracture line.", P),
    (
        "IMPRESSION:\nLEFT SACRAL ALA MARROW OEDEMA\nNO FRACTURE LINE\nCONSISTENT WITH GRADE 3 STRESS REACTION",
        P,
    ),
    ("No acute fracture line, but sacral ala marrow oedema c/w stress reaction.", P),
    # ---- negated, before
    ("No e/o sacral stress fx.", N),
    ("Neg for sacral stress fracture.", N),
    ("NEG FOR SACRAL STRESS FX.", N),
    ("IMPRESSION: NO MRI EVIDENCE OF SACRAL STRESS FRACTURE.", N),
    ("Nil sacral stress fracture.", N),
    ("Nil evidence of a sacral stress fracture.", N),
    ("Negative MRI for sacral stress injury.", N),
    ("No definite sacral stress fracture.", N),
    ("No convincing evidence of sacral stress reaction.", N),
    ("Normal appearance of the sacrum without stress reaction.", N),
    ("L sacral ala marrow oedema w/o stress fracture.", NOT_P),
    ("R SACRAL STRESS REACTION W/O FRACTURE LINE.", P),
    ("Appearances are not typical of a sacral stress fracture.", N),
    ("There is no MRI evidence to suggest a sacral stress fracture.", N),
    ("No sacral stress fracture is seen, however there is marrow oedema in the left ilium.", NOT_P),
    # ---- negated, after
    ("Sacral stress fracture: negative.", N),
    ("Sacral stress fracture - NEGATIVE.", N),
    ("Sacral stress fracture: no evidence.", N),
    ("Sacral stress reaction: absent.", N),
    ("Sacral stress reaction: not present.", N),
    ("Sacral stress fracture is not visualised.", N),
    ("Sacral stress fracture not visualized.", N),
    ("Sacral stress fracture not confirmed.", N),
    ("Sacral stress fracture is no longer apparent.", N),
    ("Sacral stress fracture can be excluded.", N),
    ("Left sacral stress fracture has been excluded.", N),
    ("SACRAL STRESS FRACTURE NOT IDENTIFIED.", N),
    ("Sacral stress fracture is not a feature.", N),
    ("Sacral marrow oedema or stress fracture: none seen.", N),
    # ---- hedged / uncertain
    ("Sacral stress fracture unlikely.", NOT_P),
    ("Sacral stress fracture is thought unlikely.", NOT_P),
    ("Unlikely to represent a sacral stress fracture.", NOT_P),
    ("Doubt sacral stress fracture.", NOT_P),
    ("Sacral stress fracture is doubtful.", NOT_P),
    ("Sacral stress fracture is not favoured.", NOT_P),
    ("Marrow oedema in the L sacral ala, favoured to represent early stress reaction.", U),
    ("Findings favour a left sacral stress reaction.", U),
    ("Mild marrow oedema in the sacrum, non-specific.", U),
    ("Nonspecific marrow edema in the left sacral ala.", U),
    ("Minor marrow oedema in the left sacral ala, of doubtful clinical significance.", NOT_P),
    ("Trace marrow oedema in the left sacral ala, not thought to be significant.", NOT_P),
    ("Sacral marrow oedema of uncertain significance.", U),
    ("Subtle sacral marrow oedema - early stress reaction not excluded.", U),
    ("Early stress reaction in the left sacral ala cannot be excluded.", U),
    ("Likely reflects early sacral stress reaction.", U),
    ("Probable left sacral stress reaction.", U),
    ("Features highly suggestive of L sacral stress fracture.", U),
    ("Sacral stress fracture, age indeterminate.", U),
    ("Left sacral marrow oedema ?stress reaction.", U),
    ("Sacral marrow oedema may represent stress reaction or sacroiliitis.", U),
    ("Sacral stress reaction is felt less likely.", U),
    ("Findings could be consistent with an early sacral stress reaction.", U),
    ("Appearances would be in keeping with a possible sacral stress reaction.", U),
    ("L sacral ala oedema: stress reaction / sacroiliitis.", U),
    ("DDx: sacral stress reaction, sacroiliitis.", U),
    ("Sacral marrow oedema representing stress reaction or early sacroiliitis.", U),
    ("Sacral stress reaction suspected clinically; MRI equivocal.", U),
    ("Query early left sacral stress reaction.", NOT_P),
    # ---- attributed
    ("Marrow oedema in the left sacral ala c/w sacroiliitis.", A),
    ("Sacral marrow oedema likely reflects sacroiliitis.", A),
    (
        "Periarticular marrow oedema on both sides of the left SIJ, sacral and iliac, typical of sacroiliitis.",
        A,
    ),
    (
        "Subchondral bone marrow oedema in the left sacrum meeting the ASAS definition of active sacroiliitis.",
        A,
    ),
    ("Marrow oedema at the left sacral ala related to SIJ osteoarthritis.", A),
    ("Bilateral sacral ala fractures (H-pattern) in keeping with insufficiency fractures.", A),
    ("Sacral fractures, insufficiency type.", A),
    ("H-shaped sacral insufficiency fracture.", A),
    ("Stress fracture through a sacral metastasis.", A),
    ("Pathological fracture of the sacrum through a lytic lesion.", A),
    ("Left sacral stress fracture post radiotherapy.", A),
    ("Sacral stress fracture in the setting of prior pelvic radiation.", A),
    ("Sacral stress fracture in an osteoporotic patient.", A),
    ("Sacral marrow oedema, ?metastasis.", NOT_P),
    ("Ala marrow oedema of the sacrum secondary to SIJ degeneration.", A),
    ("Sacral marrow oedema, physiological.", NOT_P),
    ("No pelvic stress fracture. Sacral ala marrow oedema is physiological.", NOT_P),
    ("Left sacral ala marrow oedema adjacent to the SIJ, inflammatory in appearance.", A),
    ("Sacral marrow oedema due to Modic change at L5-S1.", A),
    ("Findings are of sacroiliitis rather than stress fracture of the sacrum.", NOT_P),
    # ---- history: healed/old/known/stable
    ("Old healed sacral stress fracture.", H),
    ("Sacral stress fracture, now healed.", H),
    ("Healing L sacral stress fx with callus.", H),
    ("Near-complete healing of the left sacral stress fracture.", H),
    ("Resolved left sacral stress reaction.", H),
    ("Interval resolution of the left sacral marrow oedema.", H),
    ("Sacral marrow oedema has completely resolved.", H),
    ("Sacral stress fracture, stable.", H),
    ("Stable appearance of the left sacral stress fracture.", H),
    ("Unchanged left sacral stress fracture.", H),
    ("Left sacral stress fracture, unchanged since 03/2026.", H),
    ("Improving left sacral stress reaction.", H),
    ("Interval improvement in the left sacral stress reaction.", H),
    ("Interval decrease in the left sacral marrow oedema.", H),
    ("Sacral marrow oedema has since settled.", H),
    ("Sacral marrow oedema has regressed.", H),
    ("Left sacral stress fracture has united.", H),
    ("Re-demonstrated left sacral stress fracture.", H),
    ("Persisting marrow oedema at the left sacral stress fracture.", H),
    ("Sacral stress fracture, chronic in appearance.", H),
    (
        "Left sacral stress fracture with surrounding sclerosis, in keeping with a chronic injury.",
        H,
    ),
    ("Left sacral stress reaction, less conspicuous than on the prior study.", H),
    ("Left sacral stress fracture, similar to prior.", H),
    ("Hx L sacral stress fx 2024. No acute abnormality.", H),
    ("S/p healed left sacral stress fracture.", H),
    ("Sacral stress reaction (Fredericson grade 2) has resolved since 01/2026.", H),
    (
        "Compared with 03/2026, the previously demonstrated left sacral stress fracture has healed. No new stress fracture.",
        H,
    ),
    ("Left sacral stress fracture from 03/2025 is healed.", H),
    ("Known L sacral stress fracture - ongoing healing response.", H),
    # ---- other sites
    ("Stress fracture of the right iliac wing extending toward the sacrum.", NOT_P),
    ("Stress fracture of the L iliac bone, close to the sacrum.", NOT_P),
    ("Stress fracture of the right ilium, lateral to the sacral ala.", NOT_P),
    ("Iliac-sided marrow oedema at the left SIJ, opposite the sacral ala.", NOT_P),
    ("Stress fracture of the right inferior pubic ramus with a small sacral Tarlov cyst.", NOT_P),
    ("Left femoral neck stress reaction, incidental sacral Tarlov cyst.", NOT_P),
    ("Right L5 pars stress reaction; sacral ala normal.", NOT_P),
    ("Bilateral L5 pars interarticularis stress reactions. Sacrum normal.", NOT_P),
    ("L5 pars stress fracture. No sacral abnormality.", NOT_P),
    ("Stress reaction of the left femoral neck (compression side). Sacrum and SIJs normal.", NOT_P),
    ("Right superior pubic ramus stress reaction; the sacrum is normal.", NOT_P),
    ("Stress reaction in the left femoral neck, the sacral alae are normal.", NOT_P),
    ("1) Sacral Tarlov cyst 2) Left femoral neck stress fracture", NOT_P),
    ("HEALED LEFT SACRAL STRESS FRACTURE\nNEW LEFT FEMORAL NECK STRESS REACTION", NOT_P),
    ("Old healed right sacral stress fracture\nLeft pubic ramus stress reaction", NOT_P),
    ("Stress fracture of the left pubic ramus. Normal sacrum.", NOT_P),
    ("Stress reaction of the posterior left ilium at the sacroiliac joint.", NOT_P),
    ("Left L5 pars stress reaction extending to the pedicle; sacrum spared.", NOT_P),
    (
        "Right femoral neck stress fracture with marrow oedema; sacral marrow signal preserved.",
        NOT_P,
    ),
    # ---- multi-sentence: one positive-looking sentence, context elsewhere
    ("Left sacral marrow oedema. Appearances are those of sacroiliitis.", NOT_P),
    ("Marrow oedema in the left sacral ala. This is likely degenerative.", NOT_P),
    ("Marrow oedema left sacral ala. Findings may represent early stress reaction.", NOT_P),
    (
        "Marrow oedema in the left sacral ala. Differential includes stress reaction and sacroiliitis.",
        NOT_P,
    ),
    (
        "1. Left sacral stress fracture. 2. Compared to 03/2026, the marrow oedema has decreased, in keeping with healing.",
        NOT_P,
    ),
    ("Left sacral stress fracture. This has healed since the prior study.", NOT_P),
    ("Left sacral ala stress fracture. No longer seen on today's study.", NOT_P),
    ("IMPRESSION: 1. No sacral stress fracture. 2. Mild bilateral SIJ degenerative change.", N),
    (
        "1. Healed right sacral stress fracture. 2. No new fracture. 3. Left femoral neck stress reaction.",
        H,
    ),
    (
        "Clinical notes: runner, L buttock pain, sacral stress fracture 2024. Impression: no acute abnormality.",
        NOT_P,
    ),
    ("Hx: L sacral stress fracture 2024. Impression: normal.", NOT_P),
    ("Reason: ?L sacral stress fracture. Impression: Normal MRI pelvis.", NOT_P),
    ("CLINICAL HX: runner, r/o sacral stress fx. IMPRESSION: NO ACUTE FINDING.", NOT_P),
    ("Indication - query sacral stress fracture. Conclusion: normal.", NOT_P),
    ("1) No sacral fracture 2) Right sacral ala marrow oedema c/w stress reaction", P),
]
# Whole reports whose impression, addendum or correction takes a finding back: never positive.
REVIEW_REPORTS = [
    "FINDINGS: Left sacral ala marrow oedema. IMPRESSION: Findings are likely degenerative, related to SIJ osteoarthritis.",
    "FINDINGS:\nSacrum: marrow oedema in the right sacral ala.\nSIJs: erosions and subchondral sclerosis bilaterally.\nIMPRESSION:\nBilateral sacroiliitis.",
    "IMPRESSION: Left sacral stress fracture. ADDENDUM: On review with the prior CT, this represents an insufficiency fracture in the setting of osteoporosis.",
    "IMPRESSION: Left sacral stress reaction.\nADDENDUM 12/01: After discussion with the referring clinician, the previously reported left sacral stress reaction is retracted; appearances represent normal red marrow.",
    "IMPRESSION: Right sacral stress fracture. CORRECTION: Left, not right.",
    "Impression: 1. Left sacral ala stress fracture. Addendum: correction - this should read left iliac wing stress fracture; the sacrum is normal.",
]


@pytest.mark.parametrize(("text", "expected"), REVIEW, ids=[c[0][:60] for c in REVIEW])
def test_impression_review_corpus(text: str, expected: ReportReading | str) -> None:
    reading = read_impression(text).reading
    if expected == NOT_P:
        assert reading is not P
    else:
        assert reading is expected


@pytest.mark.parametrize("text", REVIEW_REPORTS, ids=[t[:60] for t in REVIEW_REPORTS])
def test_impression_taken_back_elsewhere_in_the_report_is_not_positive(text: str) -> None:
    assert read_impression(text).reading is not P


# ---------------------------------------------------------------------------- near misses
@pytest.mark.parametrize(
    ("negative", "positive"),
    [
        (
            "No sacral stress fracture; degenerative changes.",
            "Sacral stress fracture; no displacement.",
        ),
        (
            "Marrow edema within the right sacral ala is not demonstrated.",
            "Marrow edema within the right sacral ala is demonstrated, compatible with stress reaction.",
        ),
        (
            "Left sacral ala marrow edema, likely degenerative.",
            "Left sacral ala marrow edema, compatible with stress reaction.",
        ),
        ("Healed left sacral stress fracture.", "New left sacral stress fracture."),
        ("Possible left sacral stress reaction.", "Definite left sacral stress reaction."),
        (
            "Stress reaction of the ilium adjacent to the sacrum.",
            "Stress reaction of the sacrum adjacent to the ilium.",
        ),
    ],
)
def test_impression_near_misses_on_both_sides(negative: str, positive: str) -> None:
    assert read_impression(negative).reading is not P
    assert read_impression(positive).reading is P


def test_impression_sacrum_study_needs_no_site_word_but_other_bones_stay_out() -> None:
    """In an MR Sacrum report, "stress fracture; no displacement" is about the sacrum; a
    sentence naming another bone is not."""
    assert read_impression("Stress fracture; no displacement.", sacrum_study=True).reading is P
    assert read_impression("Stress fracture; no displacement.").reading is S
    assert (
        read_impression("No stress fracture; degenerative changes.", sacrum_study=True).reading is N
    )
    assert (
        read_impression("Stress fracture of the left iliac wing.", sacrum_study=True).reading
        is OTHER
    )


# ---------------------------------------------------------------------------- across sentences
def test_impression_one_positive_sentence_wins_and_is_quoted() -> None:
    text = (
        "IMPRESSION: 1. Healed right sacral stress fracture. "
        "2. Marrow edema in the left sacral ala with a fracture line, consistent with stress "
        "fracture. 3. Possible early stress reaction of the left femoral neck."
    )
    read = read_impression(text)
    assert read.reading is P
    assert read.quote == (
        "Marrow edema in the left sacral ala with a fracture line, consistent with stress fracture."
    )
    assert read.history_quote == "Healed right sacral stress fracture."


def test_impression_uncertain_outranks_negated_and_history() -> None:
    read = read_impression(
        "Healed right sacral stress fracture. No new fracture. Possible left sacral stress reaction."
    )
    assert read.reading is U
    assert read.quote == "Possible left sacral stress reaction."
    assert read.history_quote == "Healed right sacral stress fracture."


def test_impression_quote_is_the_sentence_without_its_section_label_or_number() -> None:
    read = read_impression("Findings: see above.\nImpression:\n1. Right sacral stress reaction.")
    assert read.quote == "Right sacral stress reaction."


def test_impression_quote_is_capped() -> None:
    long = "Left sacral stress fracture " + "with extensive surrounding edema " * 20 + "."
    quote = read_impression(long).quote
    assert quote is not None
    assert len(quote) <= 300
    assert quote.endswith("\u2026")


def test_impression_sentences_split_on_punctuation_lists_and_sections_not_on_wrapped_lines() -> (
    None
):
    text = (
        "INDICATION: pain. IMPRESSION: 1. Left sacral ala\nstress fracture vs. reaction.\n"
        "2. No effusion; sacrum otherwise normal."
    )
    assert list(impression_sentences(text)) == [
        "INDICATION: pain.",
        "IMPRESSION: 1. Left sacral ala stress fracture vs. reaction.",
        "2. No effusion",
        "sacrum otherwise normal.",
    ]


# ---------------------------------------------------------------------------- grade
@pytest.mark.parametrize(
    ("text", "grade"),
    [
        (
            "1. Right sacral ala stress reaction. 2. Left femoral neck stress fracture with a "
            "visible fracture line.",
            "stress reaction",
        ),
        (
            "Healed right sacral stress fracture (Fredericson 4). New left sacral stress "
            "reaction, Fredericson grade 2.",
            "Fredericson grade 2",
        ),
        ("Left sacral stress fracture. Fredericson grade 4.", "Fredericson grade 4"),
        ("R SACRAL STRESS REACTION W/O FRACTURE LINE.", "no fracture line"),
    ],
)
def test_impression_grade_is_read_from_the_current_sacral_injury_only(
    text: str, grade: str
) -> None:
    """8.5: the grade of a healed injury or of another bone is not this injury's grade."""
    assert grade_from_text(read_impression(text).grading)[1] == grade
