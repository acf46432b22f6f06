"""Reading tables and validating them against the schema, with real files under tmp_path."""

from __future__ import annotations

import gzip
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest

from ferry.data import read_table, sha256_of, to_onnx_inputs, validate
from ferry.errors import DataError, DataFormatError, DataValidationError
from ferry.schema import Schema


@pytest.fixture
def schema() -> Schema:
    return Schema.from_dict(
        {
            "name": "churn",
            "target": "churned",
            "id": "customer_id",
            "timestamp": "signup_at",
            "pii": ["email"],
            "features": [
                {"name": "tenure_months", "type": "numeric", "min": 0, "max": 600, "nullable": False},
                {"name": "monthly_charges", "type": "numeric"},
                {"name": "plan", "type": "categorical", "levels": ["basic", "premium"], "allow_unknown": False},
                {"name": "region", "type": "categorical"},
            ],
        }
    )


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["C00001", "C00002", "C00003", "C00004"],
            "signup_at": [
                "2025-01-01T00:00:00Z",
                "2025-01-02 10:30:00+00:00",
                "2025-01-03",
                "2025-01-04T01:00:00+02:00",
            ],
            "email": ["a@example.com", "b@example.com", "c@example.com", "d@example.com"],
            "tenure_months": [1, 24, 0, 72],
            "monthly_charges": [29.5, None, 99.0, 45.25],
            "plan": ["basic", "premium", "basic", None],
            "region": ["north", None, "south", "north"],
            "notes": ["x", "y", "z", "w"],
            "churned": [0, 1, 0, 1],
        },
        dtype="object",
    ).astype({"tenure_months": "int64", "monthly_charges": "float64", "churned": "int64"})


@pytest.fixture
def memory_dir() -> Iterator[str]:
    """A fresh directory on fsspec's in-memory filesystem, removed afterwards."""
    root = f"/ferry-test-{uuid.uuid4().hex}"
    yield f"memory://{root}"
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


# ----------------------------------------------------------------------------------------------------------- reading


def test_read_csv_normalises_dtypes(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    got = read_table(path)
    assert list(got.columns) == list(frame.columns)
    assert got["tenure_months"].dtype == np.float64
    assert got["churned"].dtype == np.float64
    assert got["plan"].dtype == object
    assert got["plan"].tolist() == ["basic", "premium", "basic", None]
    assert got["customer_id"].tolist() == frame["customer_id"].tolist()


def test_read_parquet(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "data.parquet"
    frame.to_parquet(path, index=False)
    got = read_table(path)
    assert got["tenure_months"].dtype == np.float64
    assert got["region"].dtype == object
    assert got["region"].tolist() == ["north", None, "south", "north"]
    assert len(got) == 4


def test_read_gzipped_csv_and_pq_suffix(tmp_path: Path, frame: pd.DataFrame) -> None:
    gz = tmp_path / "data.csv.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        frame.to_csv(fh, index=False)
    pq = tmp_path / "data.pq"
    frame.to_parquet(pq, index=False)
    assert read_table(gz)["plan"].tolist() == read_table(pq)["plan"].tolist()


def test_parquet_without_suffix_is_sniffed(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "export.bin"
    frame.to_parquet(path, index=False)
    assert len(read_table(str(path))) == 4


def test_csv_and_parquet_validate_alike(tmp_path: Path, frame: pd.DataFrame, schema: Schema) -> None:
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    from_csv = validate(read_table(tmp_path / "d.csv"), schema)
    from_parquet = validate(read_table(tmp_path / "d.parquet"), schema)
    pd.testing.assert_frame_equal(from_csv, from_parquet)


def test_memory_url_csv_and_parquet(memory_dir: str, frame: pd.DataFrame, schema: Schema) -> None:
    with fsspec.open(f"{memory_dir}/d.csv", "w") as fh:
        frame.to_csv(fh, index=False)
    with fsspec.open(f"{memory_dir}/d.parquet", "wb") as fh:
        frame.to_parquet(fh, index=False)
    for name in ("d.csv", "d.parquet"):
        got = validate(read_table(f"{memory_dir}/{name}"), schema)
        assert got["tenure_months"].tolist() == [1.0, 24.0, 0.0, 72.0]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"nope\.csv: file not found; check the path"):
        read_table(tmp_path / "nope.csv")


def test_missing_memory_file(memory_dir: str) -> None:
    with pytest.raises(DataFormatError, match="file not found"):
        read_table(f"{memory_dir}/nope.parquet")


def test_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.parquet").mkdir()
    with pytest.raises(DataFormatError, match="is a directory"):
        read_table(tmp_path / "dir.parquet")


@pytest.mark.parametrize("name", ["empty.csv", "empty.parquet", "empty.csv.gz"])
def test_zero_byte_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"the file is empty \(0 bytes\)") as info:
        read_table(path)
    assert str(path) in str(info.value)


def test_header_only_csv(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("customer_id,tenure_months,churned\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="has a header but no rows"):
        read_table(path)


def test_blank_csv(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="no header and no rows"):
        read_table(path)


def test_zero_row_parquet(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "none.parquet"
    frame.iloc[:0].to_parquet(path, index=False)
    with pytest.raises(DataFormatError, match="no rows"):
        read_table(path)


def test_truncated_parquet(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "data.parquet"
    frame.to_parquet(path, index=False)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFormatError, match="not a readable Parquet file") as info:
        read_table(path)
    assert str(path) in str(info.value)
    assert "write it again" in str(info.value)


def test_csv_named_parquet(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="not a readable Parquet file"):
        read_table(path)


def test_ragged_csv(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6,7,8\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="cannot parse as CSV") as info:
        read_table(path)
    assert "delimiter" in str(info.value)


def test_binary_csv(tmp_path: Path) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(b"a,b\n\xff\xfe\x00\x81,\x92\n")
    with pytest.raises(DataFormatError, match="is not UTF-8"):
        read_table(path)


def test_truncated_gzip(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "data.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        pd.concat([frame] * 200).to_csv(fh, index=False)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFormatError, match="corrupt or truncated"):
        read_table(path)


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"PK\x03\x04 not a table ferry reads")
    with pytest.raises(DataFormatError, match=r"unknown file format; name it \.csv"):
        read_table(path)


def test_format_errors_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        read_table(tmp_path / "nope.csv")


# ------------------------------------------------------------------------------------------------------------ sha256


def test_sha256_of_matches_hashlib(tmp_path: Path, memory_dir: str) -> None:
    payload = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)  # spans several read chunks
    path = tmp_path / "blob.bin"
    path.write_bytes(payload)
    with fsspec.open(f"{memory_dir}/blob.bin", "wb") as fh:
        fh.write(payload)
    expected = hashlib.sha256(payload).hexdigest()
    assert sha256_of(path) == expected
    assert sha256_of(f"{memory_dir}/blob.bin") == expected


def test_sha256_of_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="file not found"):
        sha256_of(tmp_path / "nope.csv")


# -------------------------------------------------------------------------------------------------------- validation


def test_validate_types_and_columns(frame: pd.DataFrame, schema: Schema) -> None:
    got = validate(frame, schema)
    assert list(got.columns) == [
        "customer_id",
        "signup_at",
        "tenure_months",
        "monthly_charges",
        "plan",
        "region",
        "churned",
    ]
    assert str(got["signup_at"].dtype) == "datetime64[ns, UTC]"
    assert got["signup_at"].iloc[3] == pd.Timestamp("2025-01-03T23:00:00Z")
    assert got["tenure_months"].dtype == np.float64
    assert np.isnan(got["monthly_charges"].iloc[1])
    assert got["plan"].dtype == object
    assert got["plan"].tolist() == ["basic", "premium", "basic", None]
    assert got["region"].tolist() == ["north", None, "south", "north"]
    assert got["churned"].dtype == np.int64
    assert got["churned"].tolist() == [0, 1, 0, 1]


def test_validate_drops_pii_and_extra_columns(frame: pd.DataFrame, schema: Schema) -> None:
    got = validate(frame, schema)
    assert "email" not in got.columns
    assert "notes" not in got.columns


def test_validate_does_not_mutate_input(frame: pd.DataFrame, schema: Schema) -> None:
    frame = frame.assign(monthly_charges=["29.5", "", "99", "45.25"], churned=["0", "1", "0", "1"])
    before = frame.copy(deep=True)
    validate(frame, schema)
    pd.testing.assert_frame_equal(frame, before)


def test_validate_returns_a_new_frame(frame: pd.DataFrame, schema: Schema) -> None:
    got = validate(frame, schema)
    got.loc[0, "tenure_months"] = 999.0
    got.loc[0, "customer_id"] = "changed"
    assert frame.loc[0, "tenure_months"] == 1
    assert frame.loc[0, "customer_id"] == "C00001"


def test_validate_keeps_the_index(frame: pd.DataFrame, schema: Schema) -> None:
    shuffled = frame.set_axis([10, 30, 20, 40])
    assert validate(shuffled, schema).index.tolist() == [10, 30, 20, 40]
    repeated = frame.set_axis([7, 7, 7, 7])
    assert validate(repeated, schema)["tenure_months"].tolist() == [1.0, 24.0, 0.0, 72.0]


def test_scoring_data_needs_no_target(frame: pd.DataFrame, schema: Schema) -> None:
    got = validate(frame.drop(columns=["churned"]), schema, require_target=False)
    assert "churned" not in got.columns
    assert validate(frame, schema, require_target=False).columns[-1] == "region"


def test_missing_column(frame: pd.DataFrame, schema: Schema) -> None:
    with pytest.raises(DataValidationError, match="the column is missing") as info:
        validate(frame.drop(columns=["plan"]), schema)
    err = info.value
    assert (err.column, err.rule) == ("plan", "required")
    assert "'tenure_months'" in err.detail  # says which columns the data has


def test_missing_target_is_required(frame: pd.DataFrame, schema: Schema) -> None:
    with pytest.raises(DataValidationError) as info:
        validate(frame.drop(columns=["churned"]), schema)
    assert (info.value.column, info.value.rule) == ("churned", "required")


def test_string_in_numeric_names_the_row_id(frame: pd.DataFrame, schema: Schema) -> None:
    bad = frame.assign(monthly_charges=pd.Series(["29.5", "abc", " 99 ", ""], dtype="object"))
    with pytest.raises(DataValidationError) as info:
        validate(bad, schema)
    err = info.value
    assert (err.column, err.rule) == ("monthly_charges", "numeric_type")
    assert err.examples == ["row id=C00002: 'abc'"]
    assert "1 of 4 rows" in err.detail
    assert "row id=C00002: 'abc'" in str(err)


def test_numeric_text_is_parsed(frame: pd.DataFrame, schema: Schema) -> None:
    text = frame.assign(monthly_charges=pd.Series(["29.5", "", " 99 ", None], dtype="object"))
    got = validate(text, schema)
    assert got["monthly_charges"].tolist()[0] == 29.5
    assert np.isnan(got["monthly_charges"].iloc[1])
    assert got["monthly_charges"].iloc[2] == 99.0


def test_without_id_rows_are_numbered(frame: pd.DataFrame, schema: Schema) -> None:
    no_id = schema.model_copy(update={"id": None})
    bad = frame.assign(monthly_charges=pd.Series(["1", "2", "x", "y"], dtype="object"))
    with pytest.raises(DataValidationError) as info:
        validate(bad, no_id)
    assert info.value.examples == ["row 2: 'x'", "row 3: 'y'"]


def test_examples_are_capped_at_three_but_all_rows_are_counted(schema: Schema) -> None:
    n = 10
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(n)],
            "signup_at": ["2025-01-01"] * n,
            "tenure_months": [-1.0] * n,
            "monthly_charges": [1.0] * n,
            "plan": ["basic"] * n,
            "region": ["x"] * n,
            "churned": [0, 1] * (n // 2),
        }
    )
    with pytest.raises(DataValidationError) as info:
        validate(frame, schema)
    assert info.value.rule == "range"
    assert len(info.value.examples) == 3
    assert "10 of 10 rows" in info.value.detail
    assert info.value.examples[0] == "row id=C0: -1.0"


@pytest.mark.parametrize("bad", ["inf", "-Infinity", "nan", np.inf])
def test_non_finite_numbers(frame: pd.DataFrame, schema: Schema, bad: object) -> None:
    values = pd.Series([1.0, bad, 2.0, 3.0], dtype="object" if isinstance(bad, str) else "float64")
    with pytest.raises(DataValidationError) as info:
        validate(frame.assign(monthly_charges=values), schema)
    assert (info.value.column, info.value.rule) == ("monthly_charges", "finite")
    assert info.value.examples[0].startswith("row id=C00002: ")


def test_inf_read_from_csv_is_not_finite(tmp_path: Path, frame: pd.DataFrame, schema: Schema) -> None:
    path = tmp_path / "inf.csv"
    frame.assign(monthly_charges=["1.0", "inf", "2", "3"]).to_csv(path, index=False)
    with pytest.raises(DataValidationError) as info:
        validate(read_table(path), schema)
    assert info.value.rule == "finite"


def test_range(frame: pd.DataFrame, schema: Schema) -> None:
    with pytest.raises(DataValidationError) as info:
        validate(frame.assign(tenure_months=[1, 700, -3, 5]), schema)
    err = info.value
    assert (err.column, err.rule) == ("tenure_months", "range")
    assert "[0, 600]" in err.detail
    assert "2 of 4 rows" in err.detail
    assert err.examples == ["row id=C00002: 700.0", "row id=C00003: -3.0"]


def test_nan_in_non_nullable_numeric(frame: pd.DataFrame, schema: Schema) -> None:
    with pytest.raises(DataValidationError) as info:
        validate(frame.assign(tenure_months=[1.0, np.nan, 3.0, 4.0]), schema)
    assert (info.value.column, info.value.rule) == ("tenure_months", "not_null")
    assert info.value.examples == ["row id=C00002: <missing>"]
    assert "nullable: true" in info.value.detail


def test_missing_in_non_nullable_categorical(frame: pd.DataFrame, schema: Schema) -> None:
    closed = schema.model_copy(
        update={"features": (*schema.features[:3], schema.features[3].model_copy(update={"nullable": False}))}
    )
    with pytest.raises(DataValidationError) as info:
        validate(frame.assign(region=["north", "  ", "south", "west"]), closed)
    assert (info.value.column, info.value.rule) == ("region", "not_null")
    assert info.value.examples == ["row id=C00002: '  '"]


def test_unknown_category(frame: pd.DataFrame, schema: Schema) -> None:
    with pytest.raises(DataValidationError) as info:
        validate(frame.assign(plan=["basic", "gold", "premium", "Basic"]), schema)
    err = info.value
    assert (err.column, err.rule) == ("plan", "levels")
    assert "'Basic', 'gold'" in err.detail
    assert "allow_unknown: true" in err.detail
    assert err.examples == ["row id=C00002: 'gold'", "row id=C00004: 'Basic'"]


def test_unknown_category_is_fine_when_allowed(frame: pd.DataFrame, schema: Schema) -> None:
    got = validate(frame.assign(region=["north", "mars", "south", "north"]), schema)
    assert got["region"].tolist()[1] == "mars"


def test_numeric_codes_in_a_categorical_column_become_labels(frame: pd.DataFrame, schema: Schema) -> None:
    got = validate(frame.assign(region=[1.0, 2.0, np.nan, 10.0]), schema)
    assert got["region"].tolist() == ["1", "2", None, "10"]


def test_target_missing(frame: pd.DataFrame, schema: Schema) -> None:
    with pytest.raises(DataValidationError) as info:
        validate(frame.assign(churned=[0, np.nan, 1, 0]), schema)
    assert (info.value.column, info.value.rule) == ("churned", "target_not_null")
    assert info.value.examples == ["row id=C00002: <missing>"]


def test_target_outside_classes(frame: pd.DataFrame, schema: Schema) -> None:
    with pytest.raises(DataValidationError) as info:
        validate(frame.assign(churned=[0, 2, 1, 0]), schema.model_copy(update={"task": "binary"}))
    assert (info.value.column, info.value.rule) == ("churned", "target_classes")
    assert "found '2'" in info.value.detail


def test_target_with_one_class(frame: pd.DataFrame, schema: Schema) -> None:
    with pytest.raises(DataValidationError) as info:
        validate(frame.assign(churned=[1, 1, 1, 1]), schema)
    assert (info.value.column, info.value.rule) == ("churned", "target_two_classes")


def test_target_labels_map_to_positive_class(frame: pd.DataFrame, schema: Schema) -> None:
    labelled = schema.model_copy(update={"target_classes": ("stayed", "left")})
    got = validate(frame.assign(churned=["left", "stayed", "stayed", "left"]), labelled)
    assert got["churned"].tolist() == [1, 0, 0, 1]


def test_target_read_as_float_or_text_still_maps(frame: pd.DataFrame, schema: Schema) -> None:
    assert validate(frame.assign(churned=[0.0, 1.0, 0.0, 1.0]), schema)["churned"].tolist() == [0, 1, 0, 1]
    assert validate(frame.assign(churned=["0", "1", "0", "1"]), schema)["churned"].tolist() == [0, 1, 0, 1]
    assert validate(frame.assign(churned=[False, True, False, True]), schema)["churned"].tolist() == [0, 1, 0, 1]


def test_unparseable_timestamp(frame: pd.DataFrame, schema: Schema) -> None:
    stamps = ["2025-01-01", "yesterday", "2025-13-45", "3000-01-01"]
    with pytest.raises(DataValidationError) as info:
        validate(frame.assign(signup_at=stamps), schema)
    err = info.value
    assert (err.column, err.rule) == ("signup_at", "timestamp_type")
    assert err.examples == ["row id=C00002: 'yesterday'", "row id=C00003: '2025-13-45'", "row id=C00004: '3000-01-01'"]


def test_epoch_numbers_are_not_timestamps(frame: pd.DataFrame, schema: Schema) -> None:
    with pytest.raises(DataValidationError, match="ISO 8601") as info:
        validate(frame.assign(signup_at=[1.7e9, 1.7e9, 1.7e9, 1.7e9]), schema)
    assert info.value.rule == "timestamp_type"


def test_naive_datetimes_are_taken_as_utc(frame: pd.DataFrame, schema: Schema) -> None:
    naive = pd.to_datetime(pd.Series(["2025-01-01 12:00", "2025-01-02", "2025-01-03", "2025-01-04"]), format="ISO8601")
    got = validate(frame.assign(signup_at=naive), schema)
    assert got["signup_at"].iloc[0] == pd.Timestamp("2025-01-01T12:00:00Z")
    assert str(got["signup_at"].dtype) == "datetime64[ns, UTC]"


def test_missing_timestamp(frame: pd.DataFrame, schema: Schema) -> None:
    with pytest.raises(DataValidationError) as info:
        validate(frame.assign(signup_at=["2025-01-01", None, "2025-01-03", "2025-01-04"]), schema)
    assert (info.value.column, info.value.rule) == ("signup_at", "not_null")


def test_first_problem_raises_and_others_are_listed(frame: pd.DataFrame, schema: Schema) -> None:
    bad = frame.assign(plan=["gold"] * 4, tenure_months=[-1] * 4, churned=[1] * 4)
    with pytest.raises(DataValidationError) as info:
        validate(bad, schema)
    err = info.value
    assert (err.column, err.rule) == ("tenure_months", "range")  # feature order decides
    assert "'plan' (levels)" in err.detail
    assert "'churned' (target_two_classes)" in err.detail


def test_duplicate_column_is_refused(frame: pd.DataFrame, schema: Schema) -> None:
    doubled = pd.concat([frame, frame[["plan"]]], axis=1)
    with pytest.raises(DataValidationError, match="appears 2 times"):
        validate(doubled, schema)


# -------------------------------------------------------------------------------------------------------------- ONNX


def test_to_onnx_inputs(frame: pd.DataFrame, schema: Schema) -> None:
    inputs = to_onnx_inputs(validate(frame, schema), schema)
    assert list(inputs) == list(schema.feature_names)
    for name in schema.numeric_features:
        assert inputs[name].dtype == np.float32
        assert inputs[name].shape == (4, 1)
    assert np.isnan(inputs["monthly_charges"][1, 0])
    assert inputs["plan"].dtype == object
    assert inputs["plan"].shape == (4, 1)
    assert inputs["plan"][:, 0].tolist() == ["basic", "premium", "basic", ""]
    assert inputs["region"][:, 0].tolist() == ["north", "", "south", "north"]
    assert all(isinstance(v, str) for v in inputs["region"][:, 0])


def test_to_onnx_inputs_needs_every_feature(frame: pd.DataFrame, schema: Schema) -> None:
    with pytest.raises(DataValidationError, match="validate"):
        to_onnx_inputs(validate(frame, schema).drop(columns=["region"]), schema)
