"""The device's explanation pieces that need no model: its runtime is the publisher's file, byte for byte; it reads
``explain.npz`` with numpy alone and refuses one that is not an explanation file of the model's features; and
``top_k`` and ``class`` are checked with an error naming each."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import ferry_edge.explain_runtime
import numpy as np
import pytest
from ferry_edge.errors import BundleRejected, InputError
from ferry_edge.explain import DEFAULT_TOP_K, ExplainFile, class_index, top_k_of

import ferry.explain.runtime
from ferry.explain import ExplainFile as PublishedFile
from ferry.explain import exact_plan, sampled_plan

FEATURES = ("tenure", "plan", "spend")


def test_the_agent_runs_the_publishers_explanation_runtime_byte_for_byte() -> None:
    published = Path(ferry.explain.runtime.__file__).read_bytes()
    assert Path(ferry_edge.explain_runtime.__file__).read_bytes() == published
    assert b"import numpy" in published  # and it imports nothing the device lacks
    assert [line for line in published.splitlines() if line.startswith((b"import ", b"from "))] == [
        b"from __future__ import annotations",
        b"from typing import Any, NamedTuple, Protocol",
        b"import numpy as np",
    ]


def _published(path: Path, *, exact: bool = True) -> Path:
    background = {
        "tenure": np.array([[1.0], [2.5], [np.nan]], dtype=np.float32),
        "plan": np.array([["basic"], [""], ["pro"]], dtype=object),
        "spend": np.array([[10.0], [0.0], [3.25]], dtype=np.float32),
    }
    plan = exact_plan(3) if exact else sampled_plan(3, permutations=16, groups=2)
    path.write_bytes(PublishedFile(plan=plan, features=FEATURES, background=background).to_bytes())
    return path


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "sampled"])
def test_the_device_reads_what_the_publisher_wrote(tmp_path: Path, exact: bool) -> None:
    path = _published(tmp_path / "explain.npz", exact=exact)
    stored = ExplainFile.read(path, list(FEATURES))
    published = PublishedFile.from_bytes(path.read_bytes())
    assert stored.features == published.features
    assert stored.exact is published.plan.exact is exact
    np.testing.assert_array_equal(stored.masks, published.plan.masks)
    np.testing.assert_array_equal(stored.weights, published.plan.weights)
    for name in FEATURES:
        assert stored.background[name].dtype == published.background[name].dtype
        np.testing.assert_array_equal(stored.background[name], published.background[name])  # NaN equal to NaN
    assert stored.background["plan"].dtype == object  # text as the model takes it, not numpy's 'U' strings
    assert stored.background["tenure"].dtype == np.float32


def _npz(**arrays: Any) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def _replace(path: Path, **changes: Any) -> None:
    with np.load(path, allow_pickle=True) as arrays:
        contents = {k: arrays[k] for k in arrays.files}
    contents.update(changes)
    for name, value in list(contents.items()):
        if value is None:
            del contents[name]
    path.write_bytes(_npz(**contents))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda p: p.write_bytes(b"not a zip file"), "not an explanation file"),
        (lambda p: p.write_bytes(b""), "not an explanation file"),
        (lambda p: _replace(p, masks=None), "not an explanation file"),
        (lambda p: _replace(p, **{"background.plan": None}), "not an explanation file"),
        (lambda p: _replace(p, **{"background.plan": np.array([["a"]], dtype=object)}), "not an explanation file"),
        (lambda p: _replace(p, features=np.array(["tenure", "spend", "plan"])), "covers the features"),
        (lambda p: _replace(p, features=np.array(["tenure", "plan"])), "covers the features"),
        (lambda p: _replace(p, masks=np.ones((8, 2), dtype=bool)), "does not fit 3 features"),
        (lambda p: _replace(p, weights=np.ones((1, 3, 7))), "does not fit 3 features"),
        (lambda p: _replace(p, **{"background.spend": np.ones((2, 1), np.float32)}), r"not all of one \(b, 1\) shape"),
        (lambda p: _replace(p, **{"background.spend": np.ones(3, np.float32)}), r"not all of one \(b, 1\) shape"),
    ],
    ids=[
        "not-npz",
        "empty",
        "no-masks",
        "no-background-column",
        "pickled-objects",
        "features-reordered",
        "feature-missing",
        "masks-of-other-features",
        "weights-of-other-coalitions",
        "background-rows-differ",
        "background-flat",
    ],
)
def test_a_file_that_is_not_an_explanation_of_these_features_is_refused(
    tmp_path: Path, change: Any, problem: str
) -> None:
    path = _published(tmp_path / "explain.npz")
    change(path)
    with pytest.raises(BundleRejected, match=problem) as caught:
        ExplainFile.read(path, list(FEATURES))
    assert str(caught.value).startswith("explain.npz")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("top_k", "reason"),
    [(0, "from 1 to 3"), (4, "from 1 to 3"), (-1, "from 1 to 3"), (1.0, "got 1.0"), (True, "got True"), ("2", "'2'")],
)
def test_a_bad_top_k_is_named(top_k: Any, reason: str) -> None:
    with pytest.raises(InputError, match=reason) as caught:
        top_k_of(top_k, 3)
    assert caught.value.field == "top_k"


def test_top_k_defaults_to_the_publishers_default_or_every_feature() -> None:
    assert top_k_of(None, 15) == DEFAULT_TOP_K == 5
    assert top_k_of(None, 3) == 3
    assert [top_k_of(k, 3) for k in (1, 2, 3)] == [1, 2, 3]


@pytest.mark.parametrize(
    ("target", "task", "classes", "found"),
    [
        (None, "binary", [0, 1], -1),
        (1, "binary", [0, 1], 1),
        ("1", "binary", [0, 1], 1),
        ("crack", "multiclass", ["none", "crack"], 1),
        (None, "regression", [], -1),
    ],
)
def test_the_class_asked_is_found_by_its_name(target: Any, task: str, classes: list[Any], found: int) -> None:
    assert class_index(target, task=task, classes=classes) == found


@pytest.mark.parametrize(
    ("target", "task", "classes", "reason"),
    [
        (2, "binary", [0, 1], "2 is not one of the model's classes"),
        ("Crack", "multiclass", ["none", "crack"], "'Crack' is not one of the model's classes"),
        ("high", "regression", [], "a regression model explains its value"),
    ],
)
def test_an_unknown_class_is_named(target: Any, task: str, classes: list[Any], reason: str) -> None:
    with pytest.raises(InputError, match=reason) as caught:
        class_index(target, task=task, classes=classes)
    assert caught.value.field == "class"
