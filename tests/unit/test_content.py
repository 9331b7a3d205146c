"""The clinical content under cards/sacral-bsi: loads, is consistent, and drives the output."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from cds_service.clinical.sacral_bsi import Suspicion
from cds_service.platform.content import ContentError
from cds_service.services.sacral_bsi.content import Content, load_content
from tests import cases
from tests.conftest import assess_case

CONTENT_DIR = Path(__file__).resolve().parents[2] / "cards" / "sacral-bsi"


def test_content_suspect_summaries_name_sacral_and_stress(content: Content) -> None:
    s = content.cards.suspect
    for template in (
        s.summary_with_risks,
        s.summary_si_label,
        s.summary_default,
        s.summary_short,
        s.summary_shortest,
    ):
        assert "sacral" in template, template
        assert "stress" in template, template
        assert "!" not in template
        assert "diagnos" not in template.lower()  # decision support, never worded as a diagnosis


def test_content_fallback_summary_is_always_short_enough(content: Content) -> None:
    assert len(content.cards.suspect.summary_shortest) < 140
    assert len(content.cards.confirmed.summary_short) < 140


def test_content_version_and_changelog_agree(content: Content) -> None:
    changelog = (CONTENT_DIR / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(content.version)}\b", changelog, re.MULTILINE)


def test_content_links_are_absolute(content: Content) -> None:
    assert content.cards.links
    for link in content.cards.links:
        assert link.url.startswith("https://"), link


def test_content_protocol_has_the_four_phases_of_the_brief(content: Content) -> None:
    phases = content.protocol.phase
    assert len(phases) >= 4
    first = phases[0]
    assert (first.start_day, first.end_day) == (0, 14)  # protect until pain-free walking, 1-2 weeks
    return_to_run = next(p for p in phases if "return to running" in p.name.lower())
    assert return_to_run.start_day == 56  # 8 weeks
    assert 84 <= return_to_run.end_day <= 126  # by 12 weeks at the latest typical end
    assert content.protocol.duration_days == 182  # 3-6 months to full training
    assert all(p.criteria for p in phases)


def copy_content(tmp_path: Path) -> Path:
    target = tmp_path / "sacral-bsi"
    shutil.copytree(CONTENT_DIR, target)
    return target


def test_content_typo_in_a_parameter_stops_loading(tmp_path: Path) -> None:
    folder = copy_content(tmp_path)
    params = folder / "parameters.toml"
    params.write_text(params.read_text().replace("lbp_lookback_days", "lbp_lookback_dayz"))
    with pytest.raises(ContentError, match="lbp_lookback_dayz"):
        load_content(folder)


def test_content_missing_wording_stops_loading(tmp_path: Path) -> None:
    folder = copy_content(tmp_path)
    text = folder / "content.toml"
    text.write_text(re.sub(r"^summary_default = .*$", "", text.read_text(), flags=re.MULTILINE))
    with pytest.raises(ContentError, match="summary_default"):
        load_content(folder)


def test_content_relative_link_stops_loading(tmp_path: Path) -> None:
    folder = copy_content(tmp_path)
    text = folder / "content.toml"
    text.write_text(text.read_text().replace('url = "https://doi.org/', 'url = "/doi/'))
    with pytest.raises(ContentError, match="absolute"):
        load_content(folder)


def test_content_parameter_change_changes_the_decision(tmp_path: Path) -> None:
    """Thresholds are content: editing parameters.toml (no code change) flips the indicator."""
    folder = copy_content(tmp_path)
    params = folder / "parameters.toml"
    params.write_text(
        params.read_text().replace("warning_min_risk_factors = 1", "warning_min_risk_factors = 7")
    )
    edited = load_content(folder)
    result = assess_case(cases.maya_before_mri(), edited, cases.MAYA_SUSPECT_DAY, "maya")
    assert isinstance(result, Suspicion)
    assert result.indicator == "info"


def test_content_unverified_marks_can_be_switched_off(tmp_path: Path) -> None:
    folder = copy_content(tmp_path)
    params = folder / "parameters.toml"
    params.write_text(
        params.read_text().replace('accept_marks = ["V", "A", "U"]', 'accept_marks = ["V"]')
    )
    strict = load_content(folder)
    assert "36059-4" not in strict.terminology.codes("mri_covers_sacrum", "loinc")
    assert "24867-4" in strict.terminology.codes("mri_covers_sacrum", "loinc")
