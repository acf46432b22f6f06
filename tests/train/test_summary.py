"""Table artifact cells render in the Prefect UI as the text they hold: the UI renders each cell as markdown."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferry.train.summary import artifact_rows, markdown_table, markdown_text

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        (">= 500", "\\>= 500"),  # a block quote
        ("<= 0.05", "\\<= 0.05"),  # an HTML tag's start
        ("*worst* column", "\\*worst\\* column"),  # emphasis
        ("- item", "\\- item"),  # a list
        ("1. first", "1\\. first"),  # an ordered list
        ("# title", "\\# title"),  # a heading
        ("a|b [x](y) `z` ~s~ &amp;", "a\\|b \\[x\\](y) \\`z\\` \\~s\\~ \\&amp;"),
        ("two\nlines", "two lines"),
        ("_hidden_ device_os", "\\_hidden\\_ device_os"),  # emphasis at a word's edge; inside a word, none
        ("-0.5", "-0.5"),  # a number, as it is
        ("0.81", "0.81"),
        ("PASS", "PASS"),
    ],
)
def test_markup_in_a_cell_is_escaped(text: str, escaped: str) -> None:
    assert markdown_text(text) == escaped


def test_rows_keep_their_columns_and_values_that_are_not_text() -> None:
    rows = [{"check": "rows", "threshold": ">= 500", "value": 612, "note": None, "pass": True}]
    assert artifact_rows(rows) == [{"check": "rows", "threshold": "\\>= 500", "value": 612, "note": None, "pass": True}]
    assert "| rows | \\>= 500 |" in markdown_table([{"check": "rows", "threshold": ">= 500"}])


def test_every_table_artifact_of_the_flows_goes_through_the_one_helper() -> None:
    makers = [p.name for p in (REPO / "flows").glob("*.py") if "create_table_artifact(" in p.read_text()]
    assert makers == ["artifacts.py"]
