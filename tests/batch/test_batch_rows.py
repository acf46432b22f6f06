"""The Arrow route of batch validation (:func:`ferry.batch.rows.check_batch`) against the pandas route it replaces:
the same good rows, the same rejects (column, rule, every reason, in order) and bit-identical ONNX inputs, for
every column type a partition can bring."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ferry import data as fdata
from ferry import demo_data
from ferry.batch.rows import check_batch, split_rows
from ferry.schema import Schema

SCHEMA: Schema = demo_data.churn_schema()


def pandas_route(batch: pa.RecordBatch, schema: Schema) -> tuple[Any, Any, Any]:
    valid, good, rejects = split_rows(fdata.normalise_dtypes(batch.to_pandas()), schema)
    inputs = fdata.to_onnx_inputs(valid, schema) if good.any() else None
    return good, rejects, inputs


def assert_same_as_pandas(batch: pa.RecordBatch, schema: Schema = SCHEMA) -> None:
    good, rejects, inputs = pandas_route(batch, schema)
    got = check_batch(batch, schema)
    assert got.rows == batch.num_rows
    np.testing.assert_array_equal(got.good, good)
    assert got.rejects == rejects
    if inputs is None:
        assert got.inputs is None
        return
    assert got.inputs is not None
    assert list(got.inputs) == list(inputs)
    for name, want in inputs.items():
        have = got.inputs[name]
        assert have.shape == want.shape, name
        assert have.dtype == want.dtype, name
        if want.dtype == np.float32:
            assert have.tobytes() == want.tobytes(), name  # bit for bit, NaN payloads included
        else:
            assert have[:, 0].tolist() == want[:, 0].tolist(), name
            assert all(type(v) is str for v in have[:, 0]), name


def frame(n: int = 60, seed: int = 3) -> pd.DataFrame:
    df = demo_data.make_churn(n, seed=seed)
    return df.drop(columns=["churned", "email", "phone"])


def test_clean_demo_batch() -> None:
    batch = pa.RecordBatch.from_pandas(frame(500), preserve_index=False)
    assert_same_as_pandas(batch)
    assert check_batch(batch, SCHEMA).rejects == []


def test_dictionary_columns_as_parquet_reads_them() -> None:
    table = pa.Table.from_pandas(frame(300), preserve_index=False)
    for name in SCHEMA.categorical_features:
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, table.column(name).dictionary_encode())
    assert_same_as_pandas(table.combine_chunks().to_batches()[0])


def test_every_bad_value_is_rejected_for_the_same_reason() -> None:
    df = frame(40).astype({"tenure_months": object, "monthly_charges": object, "signup_at": object})
    df["signup_at"] = [str(t) for t in df["signup_at"]]
    df.loc[1, "tenure_months"] = "twelve"  # numeric_type
    df.loc[2, "tenure_months"] = "inf"  # finite
    df.loc[3, "tenure_months"] = "nan"  # finite (NaN written out)
    df.loc[4, "tenure_months"] = "  "  # blank = missing, not nullable
    df.loc[5, "tenure_months"] = "-1"  # range
    df.loc[6, "monthly_charges"] = " 12.5 "  # fine: numbers with spaces parse
    df.loc[7, "plan"] = "platinum"  # levels
    df.loc[8, "contract"] = None  # not_null
    df.loc[9, "contract"] = "   "  # blank category = missing
    df.loc[10, "region"] = "mars"  # no levels: fine
    df.loc[11, "device_os"] = "windows"  # allow_unknown: fine
    df.loc[12, "signup_at"] = "not a date"  # timestamp_type
    df.loc[13, "signup_at"] = None  # timestamp not_null
    df.loc[14, "signup_at"] = "01/02/2025 10:00"  # another layout: parsed
    df.loc[15, "tenure_months"] = "x"  # two problems in one row: both reasons, the first rule wins
    df.loc[15, "plan"] = "gold"
    df.loc[16, "payment_method"] = ""  # nullable, blank
    df.loc[17, "age"] = 150.0  # range
    df.loc[18, "total_charges"] = None  # nullable numeric
    df.loc[19, "satisfaction_score"] = float("nan")  # NaN in a float column is missing, not "finite"
    df.loc[20, "num_lines"] = float("inf")  # finite
    df.loc[21, "region"] = "r" * 257  # max_length (the schema's max_text_length, 256)
    df.loc[22, "region"] = "r" * 256  # fine: at the limit
    df.loc[23, "customer_id"] = "c" * 300  # an id over max_text_length
    for name in ("tenure_months", "monthly_charges"):  # text, as in a CSV
        df[name] = [None if v is None else str(v) for v in df[name]]
    batch = pa.RecordBatch.from_pandas(df, preserve_index=False)
    assert pa.types.is_large_string(batch.schema.field("tenure_months").type)
    assert_same_as_pandas(batch)
    checked = check_batch(batch, SCHEMA)
    rules = {pos: (column, rule) for pos, column, rule, _ in checked.rejects}
    assert rules == {
        1: ("tenure_months", "numeric_type"),
        2: ("tenure_months", "finite"),
        3: ("tenure_months", "finite"),
        4: ("tenure_months", "not_null"),
        5: ("tenure_months", "range"),
        7: ("plan", "levels"),
        8: ("contract", "not_null"),
        9: ("contract", "not_null"),
        12: ("signup_at", "timestamp_type"),
        13: ("signup_at", "not_null"),
        15: ("tenure_months", "numeric_type"),
        17: ("age", "range"),
        20: ("num_lines", "finite"),
        21: ("region", "max_length"),
        23: ("customer_id", "max_length"),
    }
    reason15 = next(r for pos, _, _, r in checked.rejects if pos == 15)
    assert "'tenure_months' (numeric_type): value is not a number" in reason15
    assert "'plan' (levels): category is not one of the declared levels (basic, standard, premium)" in reason15


def test_integers_small_floats_and_unusual_types_take_the_same_values() -> None:
    df = frame(50)
    table = pa.Table.from_pandas(df, preserve_index=False)
    ints = pa.array(np.arange(50) % 7 + 1, pa.int32())
    table = table.set_column(table.schema.get_field_index("num_lines"), "num_lines", ints)
    halfs = pa.array(df["monthly_charges"].to_numpy(dtype=np.float32))
    table = table.set_column(table.schema.get_field_index("monthly_charges"), "monthly_charges", halfs)
    big = pa.array([2**53 + 1] * 50, pa.int64())  # not exactly a float64: the same rounding as pandas
    table = table.set_column(table.schema.get_field_index("total_charges"), "total_charges", big)
    late = pa.array([bool(i % 2) for i in range(50)], pa.bool_())  # booleans: the pandas route for this column
    table = table.set_column(table.schema.get_field_index("late_payments"), "late_payments", late)
    lines_as_region = pa.array([float(i % 3) if i % 5 else None for i in range(50)], pa.float64())
    table = table.set_column(table.schema.get_field_index("region"), "region", lines_as_region)  # 1.0 -> "1"
    micro = pa.array([datetime(2025, 1, 1, tzinfo=UTC)] * 49 + [None], pa.timestamp("us", "UTC"))
    table = table.set_column(table.schema.get_field_index("signup_at"), "signup_at", micro)
    assert_same_as_pandas(table.combine_chunks().to_batches()[0])


def test_missing_columns_and_all_rows_rejected() -> None:
    table = pa.Table.from_pandas(frame(20), preserve_index=False).drop_columns(["plan", "customer_id"])
    batch = table.combine_chunks().to_batches()[0]
    assert_same_as_pandas(batch)
    checked = check_batch(batch, SCHEMA)
    assert checked.inputs is None
    assert not checked.good.any()
    assert {(c, r) for _, c, r, _ in checked.rejects} == {("customer_id", "required")}
    assert "'plan' (required): required column is missing from the partition" in checked.rejects[0][3]


def test_nanosecond_timestamps_with_nulls_and_nat() -> None:
    df = frame(30)
    stamps = pa.array([*df["signup_at"].tolist()[:28], None, None], pa.timestamp("ns", "UTC"))
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.set_column(table.schema.get_field_index("signup_at"), "signup_at", stamps)
    assert_same_as_pandas(table.combine_chunks().to_batches()[0])


@pytest.mark.parametrize("seed", range(5))
def test_random_garbage_agrees(seed: int) -> None:
    rng = np.random.default_rng(seed)
    df = frame(200, seed=seed).astype(object)
    pool: list[Any] = ["", " ", "x", "nan", "-inf", "1e3", "7", "basic", "premium", "ios", None, "2025-02-01"]
    for name in [*SCHEMA.feature_names, "signup_at"]:
        hit = rng.random(len(df)) < 0.1
        df.loc[hit, name] = rng.choice(np.array(pool, dtype=object), size=int(hit.sum()))
        df[name] = [None if v is None else str(v) for v in df[name]]
    assert_same_as_pandas(pa.RecordBatch.from_pandas(df, preserve_index=False))
