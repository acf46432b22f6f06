"""``ferry score --explain`` on the plain functions: the explanation columns follow the scores, add up, equal the
version's explainer on the same rows bit for bit, survive a resume; bad options and a version without a background
are refused before anything is written, and an output is never mixed with other explain options."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from batch_support import read_scores, second_version, source_table, without_time

from ferry import batch
from ferry.data import read_table, to_onnx_inputs, validate
from ferry.errors import BackgroundMissing, ConfigError
from ferry.explain import batch_columns, load_explainer
from ferry.registry import Registry
from ferry.schema import Schema

ROWS = 12
"""Rows per partition: two small partitions keep the explained rows few (each costs thousands of evaluations)."""


@pytest.fixture(autouse=True)
def _no_drift_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The explanations are under test here; the drift check beside them has its own tests."""
    monkeypatch.setenv("FERRY_BATCH_DRIFT", "false")


@pytest.fixture(scope="module")
def small_input(writable_champion: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two partitions of the champion's data (Parquet and CSV), the second with one row that breaks the schema."""
    where = tmp_path_factory.mktemp("explain-in")
    table = source_table(writable_champion)
    pq.write_table(table.slice(0, ROWS), where / "a.parquet")
    frame = table.slice(ROWS, ROWS).to_pandas()
    frame.loc[3, "tenure_months"] = -5.0  # outside the declared range: a reject, never explained
    frame.to_csv(where / "b.csv", index=False)
    return where


@pytest.fixture(scope="module")
def explained(writable_champion: dict[str, str], small_input: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``--explain`` run over the small input, in record batches of 10 rows (so a partition spans several)."""
    out = tmp_path_factory.mktemp("explained") / "out"
    settings = batch.BatchSettings(batch_rows=10, drift=False)
    summary = batch.score(
        str(small_input), str(out), Registry(writable_champion["registry"]), settings=settings, explain=True
    )
    assert summary.explain == {"top_k": 5, "class": None}
    assert (summary.scored, summary.rejected) == (2 * ROWS - 1, 1)
    return out


def schema_of(champion: dict[str, str]) -> Schema:
    registry = Registry(champion["registry"])
    return Schema.from_dict(json.loads(registry.read_bytes(registry.get(champion["version"]), "schema.json")))


def expected(
    champion: dict[str, str], small_input: Path, *, target: str | None, top_k: int, both: bool = True
) -> pd.DataFrame:
    """The explainer itself on the good rows of the input (read_table -> validate -> to_onnx_inputs), by id; only
    the Parquet partition unless ``both``."""
    schema = schema_of(champion)
    frames = [read_table(small_input / "a.parquet")]
    frames += [read_table(small_input / "b.csv").drop(index=3)] if both else []
    frame = validate(pd.concat(frames, ignore_index=True), schema, require_target=False)
    explainer = load_explainer(Registry(champion["registry"]), champion["version"])
    found = explainer.explain(to_onnx_inputs(frame, schema), target=target, top_k=top_k)
    want = pd.DataFrame(batch_columns(found, classifier=True)).infer_objects()  # the classes are whole numbers
    want.insert(0, "customer_id", frame["customer_id"].to_numpy())
    return want.sort_values("customer_id").reset_index(drop=True)


def test_explanation_columns_follow_the_scores_add_up_and_are_the_explainers(
    writable_champion: dict[str, str], small_input: Path, explained: Path
) -> None:
    schema = schema_of(writable_champion)
    got = without_time(read_scores(explained))
    features = list(schema.feature_names)
    explain_columns = ["explained_class", "explained_value", "base_value"]
    explain_columns += [f"attribution_{f}" for f in features] + [f"top_{r}" for r in range(1, 6)]
    assert list(read_scores(explained).columns) == [
        "customer_id",
        "prediction",
        "prob_0",
        "prob_1",
        "model_version",
        "scored_at",
        *explain_columns,
    ]
    assert len(got) == 2 * ROWS - 1
    attributions = got[[f"attribution_{f}" for f in features]].to_numpy()
    gap = attributions.sum(axis=1) - (got["explained_value"] - got["base_value"]).to_numpy()
    assert np.abs(gap).max() <= 1e-6
    # the predicted class is explained, and its probability is the value explained
    assert got["explained_class"].tolist() == [schema.target_classes[i] for i in got["prediction"]]
    probability = np.where(got["prediction"] == 1, got["prob_1"], got["prob_0"]).astype(np.float64)
    assert np.abs(got["explained_value"].to_numpy() - probability).max() <= 1e-6
    # each top list names the features of the largest absolute attributions, largest first
    for row, names in zip(attributions, got[[f"top_{r}" for r in range(1, 6)]].to_numpy(), strict=True):
        assert [abs(row[features.index(n)]) for n in names] == sorted(np.abs(row), reverse=True)[:5]
    want = expected(writable_champion, small_input, target=None, top_k=5)
    pd.testing.assert_frame_equal(got[want.columns], want, check_exact=True)


def test_named_class_and_every_feature(writable_champion: dict[str, str], small_input: Path, tmp_path: Path) -> None:
    registry = Registry(writable_champion["registry"])
    summary = batch.score(
        str(small_input / "a.parquet"), str(tmp_path / "out"), registry, explain=True, top_k=15, explain_class="0"
    )
    assert summary.explain == {"top_k": 15, "class": "0"}
    got = without_time(read_scores(tmp_path / "out"))
    assert set(got["explained_class"]) == {0}
    assert np.abs(got["explained_value"].to_numpy() - got["prob_0"].to_numpy()).max() <= 1e-6
    assert [c for c in got.columns if c.startswith("top_")] == [f"top_{r}" for r in range(1, 16)]
    want = expected(writable_champion, small_input, target="0", top_k=15, both=False)
    pd.testing.assert_frame_equal(got[want.columns], want, check_exact=True)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"explain": True, "top_k": 0}, ConfigError, r"--top-k \(top_k\) must be a whole number from 1 to 15.*got 0"),
        ({"explain": True, "top_k": 16}, ConfigError, r"--top-k \(top_k\) must be .* from 1 to 15.*got 16"),
        ({"explain": True, "explain_class": "maybe"}, ConfigError, r"--explain-class .*'maybe' is not one of.*0, 1"),
        ({"top_k": 3}, ConfigError, r"--top-k \(top_k\) and --explain-class .* apply only with --explain"),
    ],
)
def test_bad_explain_options_are_refused_before_anything_is_written(
    writable_champion: dict[str, str],
    small_input: Path,
    tmp_path: Path,
    options: dict[str, object],
    error: type[Exception],
    message: str,
) -> None:
    registry = Registry(writable_champion["registry"])
    with pytest.raises(error, match=message) as caught:
        batch.score(str(small_input), str(tmp_path / "out"), registry, **options)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out" / "scores").exists()
    assert not (tmp_path / "out" / "_manifest").exists()


def test_a_partition_of_rejects_only_still_has_the_explanation_columns(
    writable_champion: dict[str, str], tmp_path: Path
) -> None:
    frame = source_table(writable_champion).slice(0, 3).to_pandas()
    frame["tenure_months"] = -1.0  # every row outside the declared range
    (tmp_path / "in").mkdir()
    frame.to_parquet(tmp_path / "in" / "bad.parquet", index=False)
    registry = Registry(writable_champion["registry"])
    summary = batch.score(str(tmp_path / "in"), str(tmp_path / "out"), registry, explain=True, top_k=2)
    assert (summary.scored, summary.rejected) == (0, 3)
    written = pq.read_table(tmp_path / "out" / "scores" / "bad.parquet")
    assert written.num_rows == 0
    features = schema_of(writable_champion).feature_names
    added = ["explained_class", "explained_value", "base_value", *[f"attribution_{f}" for f in features]]
    assert written.column_names[written.column_names.index("scored_at") + 1 :] == [*added, "top_1", "top_2"]
    assert written.schema.field("explained_value").type == "double"


def test_a_version_without_a_background_is_refused_naming_it(
    writable_champion: dict[str, str], small_input: Path, tmp_path: Path
) -> None:
    shutil.copytree(writable_champion["registry"], tmp_path / "registry")
    registry = Registry(str(tmp_path / "registry"))
    bare = second_version(registry, writable_champion["version"], tmp_path)  # no explain.npz
    with pytest.raises(BackgroundMissing, match=rf"version churn/{bare} has no background .*register the model again"):
        batch.score(str(small_input), str(tmp_path / "out"), registry, version=bare, explain=True)
    assert not (tmp_path / "out" / "scores").exists()
    batch.score(str(small_input), str(tmp_path / "plain"), registry, version=bare)  # scoring alone still works
    assert len(read_scores(tmp_path / "plain")) == 2 * ROWS - 1


def test_resume_keeps_the_explanations_and_refuses_other_options(
    writable_champion: dict[str, str], small_input: Path, explained: Path, tmp_path: Path
) -> None:
    registry = Registry(writable_champion["registry"])
    out = tmp_path / "out"
    shutil.copytree(explained, out)
    want = without_time(read_scores(explained))
    # as if the run had died before the CSV partition's commit point
    (out / "_manifest" / "b.json").unlink()
    (out / "scores" / "b.parquet").unlink()
    settings = batch.BatchSettings(batch_rows=10, drift=False)
    resumed = batch.score(str(small_input), str(out), registry, settings=settings, explain=True)
    assert (resumed.skipped, resumed.scored) == (1, 2 * ROWS - 1)
    pd.testing.assert_frame_equal(without_time(read_scores(out)), want, check_exact=True)

    for options, asked in (
        ({}, "without explanations"),
        ({"explain": True, "top_k": 3}, r"with explanations \(top 3, the predicted class\)"),
        ({"explain": True, "explain_class": "1"}, r"with explanations \(top 5, class '1'\)"),
    ):
        with pytest.raises(
            ConfigError,
            match=rf"already holds partitions \(a, b\) scored with explanations \(top 5, the predicted class\), and "
            rf"this run asks {asked}",
        ):
            batch.score(str(small_input), str(out), registry, settings=settings, **options)  # type: ignore[arg-type]
    plain = tmp_path / "plain"
    batch.score(str(small_input / "a.parquet"), str(plain), registry)
    with pytest.raises(ConfigError, match=r"partitions \(a\) scored without explanations"):
        batch.score(str(small_input), str(plain), registry, explain=True)
    assert sorted(p.name for p in (plain / "scores").iterdir()) == ["a.parquet"]
