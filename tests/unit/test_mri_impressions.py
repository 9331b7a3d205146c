"""Reading MRI impressions you would trust with a patient (brief 14.1): a corpus of impression
sentences as radiologists write them, each read on its own, each with the reading the brief
decides. Expected readings were set from the brief's rules, sentence by sentence, not from the
code's output.

POSITIVE only on a clear, affirmative, sacral sentence; negations before and after the finding,
other causes, healed or earlier injuries, hedges, other sites and the indication never are.
"""

from __future__ import annotations

import pytest

from cds_service.rules.facts import ReportReading
from fhir_mappings.report_text import impression_sentences, read_impression

P, U, A, N, H, S = (
    ReportReading.POSITIVE,
    ReportReading.UNCERTAIN,
    ReportReading.ATTRIBUTED,
    ReportReading.NEGATED,
    ReportReading.HISTORY,
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
    ("Stress fracture of the left femoral neck without sacral involvement.", N),
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
    ("Stress reaction of the iliac bone adjacent to the sacrum.", N),
    ("Stress fracture of the left femoral neck. Sacrum normal.", S),
    ("Stress fracture of the right pubic ramus.", S),
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
    assert {r for _, r in CORPUS} == {P, U, A, N, H, S}


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
        read_impression("Stress fracture of the left iliac wing.", sacrum_study=True).reading is S
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
