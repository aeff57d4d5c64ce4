"""The documentation states what the code does: the settings table is generated, the README stays short and
names only settings that exist."""

from __future__ import annotations

import re

from qa_service.config import Settings, settings_table

from .conftest import ROOT


def test_configuration_doc_is_the_generated_table() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert doc.endswith(settings_table()), "regenerate the table: qa-service config --markdown"


def test_readme_is_short_and_names_real_settings() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    known = {f"QA_{name.upper()}" for name in Settings.model_fields}
    named = set(re.findall(r"\bQA_[A-Z0-9_]+", readme))
    assert named and named <= known, f"README names unknown settings: {sorted(named - known)}"
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).exists(), link
