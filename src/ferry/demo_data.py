"""A realistic, seeded telecom-churn data set for demos, tests and benchmarks.

:func:`make_churn` draws customers whose features depend on each other the way real ones do (longer contracts
mean longer tenure, premium plans cost more and use more data, unhappy customers call support more), with missing
values where real data has them (unanswered surveys, unmetered usage, unknown regions, brand-new customers without
a bill yet) and about one churner in five.

Churn follows a noisy logistic concept over several features with interactions. Two effects are monotone and
declared so in :func:`churn_schema`: churn falls with ``tenure_months`` and rises with ``support_calls``.

``drift`` (0..1) moves the world away from the reference: prices and support calls go up, month-to-month contracts
and a new device OS spread; tenure and contracts protect less, heavy data users start leaving instead of staying,
and premium customers become likelier to churn. At ``drift=1`` a model fitted on ``drift=0`` data is clearly
worse, which is what the monitoring and retraining flows must notice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from ferry import storage
from ferry.schema import Feature, Schema

__all__ = ["churn_schema", "make_churn", "write_demo"]

PLANS = ("basic", "standard", "premium")
CONTRACTS = ("month-to-month", "one-year", "two-year")
PAYMENT_METHODS = ("credit_card", "bank_transfer", "electronic_check", "mailed_check")
REGIONS = ("north", "south", "east", "west", "central")
DEVICE_OS = ("android", "ios", "other")
NEW_DEVICE_OS = "harmonyos"
"""A device OS that only appears with drift; the schema allows unknown device_os values."""

_FIRST = ("alex", "sam", "maria", "li", "noah", "ana", "omar", "eva", "ivan", "zoe", "kim", "raj", "lea", "tom")
_LAST = ("smith", "garcia", "chen", "muller", "rossi", "kowalski", "silva", "nguyen", "khan", "dubois", "berg")

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


def churn_schema() -> Schema:
    """The declared schema of :func:`make_churn` data (also in ``examples/churn/schema.yaml``)."""

    def num(name: str, description: str, **kw: Any) -> Feature:
        return Feature(name=name, type="numeric", description=description, **kw)

    def cat(name: str, description: str, **kw: Any) -> Feature:
        return Feature(name=name, type="categorical", description=description, **kw)

    return Schema(
        name="churn",
        target="churned",
        target_classes=(0, 1),
        id="customer_id",
        timestamp="signup_at",
        pii=("email", "phone"),
        features=(
            num("tenure_months", "Months as a customer.", nullable=False, min=0, max=600, direction="decreasing"),
            num("monthly_charges", "Current monthly bill.", nullable=False, min=0, max=10_000),
            num("total_charges", "Billed so far; empty before the first bill.", min=0),
            num("support_calls", "Support calls in the last 90 days.", nullable=False, min=0, direction="increasing"),
            num("data_usage_gb", "Mobile data per month; empty when unmetered.", min=0),
            num("avg_call_minutes", "Average voice minutes per month.", min=0),
            num("late_payments", "Late payments in the last 12 months.", nullable=False, min=0),
            num("age", "Account holder's age in years.", nullable=False, min=18, max=120),
            num("satisfaction_score", "Last survey answer, 1-10; empty when unanswered.", min=1, max=10),
            num("num_lines", "Phone lines on the account.", nullable=False, min=1, max=50),
            cat("plan", "Tariff.", nullable=False, levels=PLANS, allow_unknown=False),
            cat("contract", "Contract term.", nullable=False, levels=CONTRACTS, allow_unknown=False),
            cat("payment_method", "How the bill is paid.", levels=PAYMENT_METHODS, allow_unknown=True),
            cat("region", "Sales region; may be empty."),
            cat("device_os", "Operating system of the main device.", levels=DEVICE_OS, allow_unknown=True),
        ),
    )


def _check_args(n_rows: int, drift: float, days: int) -> None:
    if isinstance(n_rows, bool) or not isinstance(n_rows, int | np.integer) or n_rows < 1:
        raise ValueError(f"n_rows must be a positive integer, got {n_rows!r}")
    if isinstance(drift, bool) or not isinstance(drift, int | float) or not 0.0 <= float(drift) <= 1.0:
        raise ValueError(f"drift must be a number between 0 and 1 (0 = reference, 1 = fully drifted), got {drift!r}")
    if isinstance(days, bool) or not isinstance(days, int | np.integer) or days < 1:
        raise ValueError(f"days must be a positive integer, got {days!r}")


def _pick(rng: np.random.Generator, levels: tuple[str, ...], p: list[float], n: int) -> npt.NDArray[np.object_]:
    probs = np.asarray(p, dtype=np.float64)
    codes = rng.choice(len(levels), size=n, p=probs / probs.sum())
    return np.asarray(levels, dtype=object)[codes]


def _sigmoid(z: Floats) -> Floats:
    return 1.0 / (1.0 + np.exp(-z))


def make_churn(
    n_rows: int, *, seed: int = 0, drift: float = 0.0, start: str = "2025-01-01", days: int = 365
) -> pd.DataFrame:
    """Draw ``n_rows`` customers signed up over ``[start, start + days)``; same arguments, same frame.

    Columns: ``customer_id`` (C000001, ... in signup order), ``signup_at`` (UTC), PII (``email``, ``phone``), the
    15 features of :func:`churn_schema` and the target ``churned`` (int 0/1). Text columns are object dtype.
    ``drift`` in [0, 1] shifts feature distributions and the churn concept in proportion (see the module docs).
    Raises ValueError for a bad ``n_rows``, ``drift`` or ``days``.
    """
    _check_args(n_rows, drift, days)
    n, d = int(n_rows), float(drift)
    rng = np.random.default_rng(seed)

    origin = pd.Timestamp(start)
    origin = origin.tz_localize("UTC") if origin.tzinfo is None else origin.tz_convert("UTC")
    seconds = np.sort(rng.integers(0, days * 86_400, size=n))
    signup_at = pd.Series(origin + pd.to_timedelta(seconds, unit="s"), name="signup_at").astype("datetime64[ns, UTC]")
    customer_id = np.array([f"C{i:06d}" for i in range(1, n + 1)], dtype=object)
    first = np.asarray(_FIRST, dtype=object)[rng.integers(0, len(_FIRST), size=n)].tolist()
    last = np.asarray(_LAST, dtype=object)[rng.integers(0, len(_LAST), size=n)].tolist()
    email = np.array(
        [f"{a}.{b}{i}@example.com" for i, a, b in zip(range(1, n + 1), first, last, strict=True)], dtype=object
    )
    phone = np.array([f"+1-555-{k:07d}" for k in rng.integers(0, 10_000_000, size=n).tolist()], dtype=object)

    # Who the customers are. Drift: more month-to-month contracts, a new device OS, dearer plans.
    contract = _pick(rng, CONTRACTS, [0.50 + 0.25 * d, 0.28 - 0.13 * d, 0.22 - 0.12 * d], n)
    plan = _pick(rng, PLANS, [0.42, 0.36, 0.22], n)
    payment = _pick(rng, PAYMENT_METHODS, [0.30, 0.24, 0.31, 0.15], n)
    region = _pick(rng, REGIONS, [0.22, 0.24, 0.18, 0.21, 0.15], n)
    device_os = _pick(rng, (*DEVICE_OS, NEW_DEVICE_OS), [0.55 * (1 - 0.3 * d), 0.37 * (1 - 0.3 * d), 0.08, 0.3 * d], n)
    m2m = contract == "month-to-month"
    two_year = contract == "two-year"
    premium = plan == "premium"
    plan_level = np.select([plan == "basic", plan == "standard"], [0.0, 1.0], 2.0)

    mean_tenure = np.select([m2m, two_year], [14.0, 46.0], 30.0)
    tenure = np.minimum(np.floor(rng.gamma(1.4, mean_tenure / 1.4)), 72.0)
    age = np.clip(np.round(rng.normal(44.0, 14.0, size=n)), 18, 90)
    num_lines = np.minimum(1.0 + rng.poisson(0.6, size=n), 5.0)
    monthly = 30.0 + 32.0 * plan_level + 7.5 * (num_lines - 1) + rng.normal(0.0, 6.0, size=n) + 12.0 * d
    monthly = np.round(np.maximum(monthly, 10.0), 2)
    total = np.round(tenure * monthly * rng.lognormal(0.0, 0.05, size=n), 2)
    log_usage = 1.4 + 0.6 * plan_level + 0.35 * (age < 30) - 0.2 * (age > 60) + rng.normal(0.0, 0.55, size=n)
    usage = np.round(np.exp(log_usage), 2)
    call_minutes = np.round(rng.gamma(2.5, 60.0, size=n) * (1 + 0.15 * (num_lines - 1)), 1)
    mood = rng.normal(0.0, 1.0, size=n)  # hidden satisfaction; the survey only sometimes reveals it
    satisfaction = np.clip(np.round(6.6 + 1.9 * mood), 1, 10)
    support_calls = rng.poisson(np.exp(-0.2 - 0.45 * mood) * (1.0 + 0.7 * d)).astype(np.float64)
    late_payments = rng.poisson(
        0.25 + 0.55 * (payment == "electronic_check") + 0.2 * (payment == "mailed_check") + 0.15 * (age < 25)
    ).astype(np.float64)

    # Who leaves. Drift: tenure protects less, heavy data users now leave, premium customers get tempted away.
    # Terms whose weight drifts are centred, so drift changes who churns more than how many churn.
    log_tenure = np.log1p(tenure) - 2.8
    usage_term = log_usage - 2.2
    z = (
        -3.0
        - (0.75 * (1.0 - 0.9 * d)) * log_tenure * (1.0 + 0.35 * m2m)
        + (0.32 + 0.15 * (mood < -0.8)) * support_calls
        + 0.9 * (1.0 - 0.5 * d) * m2m
        - 0.8 * two_year
        + 0.02 * (monthly - 65.0) * (1.0 + 1.2 * m2m)
        - 0.55 * mood
        + 0.35 * late_payments
        + 0.45 * (payment == "electronic_check")
        + (-0.6 + 2.4 * d) * usage_term
        + 1.2 * d * (premium - 0.22)
        + 0.6 * d * (device_os == NEW_DEVICE_OS)
        + 0.25 * (age < 25)
        + rng.normal(0.0, 0.3, size=n)
    )
    churned = (rng.random(n) < _sigmoid(z)).astype(np.int64)

    # What the data does not record.
    total = np.where(tenure == 0, np.nan, total)
    satisfaction = np.where(rng.random(n) < 0.09 + 0.04 * (mood < -1.0), np.nan, satisfaction)
    usage = np.where(rng.random(n) < 0.05, np.nan, usage)
    region[rng.random(n) < 0.04] = None

    columns: dict[str, Any] = {
        "customer_id": customer_id,
        "signup_at": signup_at,
        "email": email,
        "phone": phone,
        "tenure_months": tenure,
        "monthly_charges": monthly,
        "total_charges": total,
        "support_calls": support_calls,
        "data_usage_gb": usage,
        "avg_call_minutes": call_minutes,
        "late_payments": late_payments,
        "age": age,
        "satisfaction_score": satisfaction,
        "num_lines": num_lines,
        "plan": plan,
        "contract": contract,
        "payment_method": payment,
        "region": region,
        "device_os": device_os,
        "churned": churned,
    }
    # Text stays object dtype (pandas 3 would otherwise infer its own string dtype), as ferry.data.read_table does.
    frame = pd.DataFrame(
        {
            name: pd.Series(values, dtype="object") if values.dtype.kind == "O" else values
            for name, values in columns.items()
        },
        copy=False,
    )
    return frame


def write_demo(
    directory: str | Path,
    *,
    n_rows: int = 10_000,
    seed: int = 0,
    drift: float = 0.0,
    fmt: Literal["csv", "parquet"] = "parquet",
    start: str = "2025-01-01",
) -> Path:
    """Write :func:`make_churn` data into ``directory`` (created if needed) and return the file's path.

    ``start``: the first signup day; a later batch starts later, so its rows are new to a model trained before.

    The name records the arguments (``churn-n10000-seed0-drift0.00.parquet``) so reference and drifted batches sit
    side by side. The file appears atomically: it is written under a temporary name and then renamed.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    frame = make_churn(n_rows, seed=seed, drift=drift, start=start)
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"churn-n{n_rows}-seed{seed}-drift{drift:.2f}.{fmt}"

    def write(fh: BinaryIO) -> None:
        if fmt == "csv":
            frame.to_csv(fh, index=False)
        else:
            frame.to_parquet(fh, index=False, engine="pyarrow")

    storage.atomic_write(storage.local_fs(), str(target), write)
    return target
