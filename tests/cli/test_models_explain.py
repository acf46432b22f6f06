"""``ferry models explain VERSION --row-file F``: the JSON of the served explainer for the rows, the waterfall picture,
and one-line errors naming the field or the version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from helpers import clone_version, copy_registry, png_size, svg_texts
from typer.testing import CliRunner

from ferry import demo_data
from ferry.cli import app
from ferry.explain import load_explainer, records
from ferry.online.records import Served, prepare
from ferry.registry import Registry

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rows(churn_champion: dict[str, str]) -> list[dict[str, Any]]:
    """Two rows of demo churn data, features only, as JSON records."""
    frame = demo_data.make_churn(2, seed=5)[list(demo_data.churn_schema().feature_names)]
    return json.loads(frame.to_json(orient="records"))


def _run(*args: str) -> Any:
    return CliRunner().invoke(
        app, ["models", "explain", *args], env={"COLUMNS": "1000"}
    )  # wide enough that no error line wraps


def test_explain_prints_the_served_explanation_and_writes_the_waterfall(
    churn_champion: dict[str, str], rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    registry = Registry(churn_champion["registry"])
    version = churn_champion["version"]
    row_file = tmp_path / "rows.json"
    row_file.write_text(json.dumps(rows))
    out = tmp_path / "why.svg"
    result = _run(version, "--row-file", str(row_file), "--out", str(out), "--registry", registry.url)
    assert result.exit_code == 0, result.output
    explainer = load_explainer(registry, version)
    expected = records(explainer.explain(prepare(rows, Served.of(explainer.schema)), top_k=5))
    assert json.loads(result.stdout) == expected  # the same float64 numbers
    texts = svg_texts(out.read_bytes())
    assert f"churn {version}" in texts
    assert any(t.startswith("row 2: P(") for t in texts)
    assert expected[0]["top"][0]["feature"] in texts

    # CSV as ferry score reads it, a class asked for, three features named, a PNG
    csv = tmp_path / "rows.csv"
    pd.DataFrame(rows[:1]).to_csv(csv, index=False)
    png = tmp_path / "why.png"
    asked = str(explainer.scorer.classes[0])
    result = _run(version, "--row-file", str(csv), "--out", str(png), "--class", asked, "--top-k", "3",
                  "--registry", registry.url)  # fmt: skip
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found == records(explainer.explain(prepare(rows[:1], Served.of(explainer.schema)), target=asked, top_k=3))
    assert [str(r["class"]) for r in found] == [asked]
    assert png_size(png.read_bytes())[0] > 100


@pytest.mark.parametrize(
    ("change", "extra", "named"),
    [
        ("missing", [], "'tenure_months'"),
        ("unknown", [], "'shoe_size'"),
        ("none", ["--top-k", "99"], "top_k"),
        ("none", ["--class", "maybe"], "'maybe'"),
        ("none", ["--out", "why.jpg"], "--out why.jpg"),
        ("many", [], "21 records exceed the limit of 20"),
    ],
)
def test_bad_input_is_one_line_naming_the_field(
    churn_champion: dict[str, str], rows: list[dict[str, Any]], tmp_path: Path, change: str, extra: list[str],
    named: str,
) -> None:  # fmt: skip
    row = dict(rows[0])
    if change == "missing":
        del row["tenure_months"]
    elif change == "unknown":
        row["shoe_size"] = 44
    row_file = tmp_path / "row.json"
    row_file.write_text(json.dumps([row] * 21 if change == "many" else row))
    out = tmp_path / "why.svg"
    args = ["--row-file", str(row_file), "--out", str(out), *extra, "--registry", churn_champion["registry"]]
    result = _run(churn_champion["version"], *args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert named in lines[0]
    assert not out.exists()
    assert result.stdout == ""


def test_a_version_without_a_background_is_named(
    churn_champion: dict[str, str], rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    registry = copy_registry(churn_champion, tmp_path / "registry")
    bare = clone_version(
        registry, registry.get(churn_champion["version"]), tmp_path / "bare", note="bare", replace={"explain.npz": None}
    )
    row_file = tmp_path / "row.json"
    row_file.write_text(json.dumps(rows[0]))
    result = _run(bare, "--row-file", str(row_file), "--out", str(tmp_path / "why.svg"), "--registry", registry.url)
    assert result.exit_code == 2
    assert f"version churn/{bare} has no background sample (explain.npz)" in " ".join(result.stderr.split())
