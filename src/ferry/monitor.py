"""Monitoring: what production produced since the last run, compared with the champion's reference.

Sources, all under the registry root so one URL is enough (``models/<model>/...``):

    online/predictions/<date>/<time>-<id>.parquet    sampled online predictions (the service's prediction log)
    online/feedback/<date>/<time>-<id>.parquet       labels sent back by prediction id
    batch/inputs/<time>-<id>.parquet                 a sample of each batch run's input, with its predictions
    online/telemetry/<date>/<time>-<id>.parquet      edge heartbeats the online service received (/telemetry)

and edge heartbeats in a folder collector (one JSON file per heartbeat), when one is given.

Each run reads only files after the source's cursor, judges each source (and each edge cohort, i.e. channel) with
Evidently through :func:`ferry.gate.data_drift` (input drift over the features, prediction drift over the positive
class's probability where it is known), and decides what to announce with :class:`Policy`:

- a source is judged only with at least ``min_rows`` new rows;
- drift is news when a feature drifts that was not already announced for the source within ``renotify_hours``
  (the same drift, or part of it, is not announced again; a drift that went away is news when it comes back);
- after an announcement that asks for a retrain, no other one does for ``cooldown_hours`` (no retrain storm).

State (cursors, what was announced, the last retrain request) is ``monitor/state.json``; every judgement is a line
of ``monitor/history.jsonl``; reports are ``monitor/reports/<run>-<source>.html``. This module does not import
Prefect: the ``monitor`` flow emits the events and artifacts.
"""

from __future__ import annotations

import io
import json
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ferry import gate, storage
from ferry.errors import FerryError
from ferry.registry import ModelVersion, Registry
from ferry.schema import Schema

__all__ = [
    "Announcement",
    "Judgement",
    "MonitorSettings",
    "MonitorState",
    "Policy",
    "Seen",
    "SourceData",
    "batch_since",
    "edge_since",
    "feedback_since",
    "judge",
    "label_metrics",
    "logged_since",
    "online_logs_since",
    "online_since",
    "quality_by_version",
    "read_labels",
    "record_batch_input",
    "reference_of",
    "sketch_frame",
]

PREDICTION = "p_positive"
"""The column holding the positive class's probability, in logs, batch samples and the reference."""
SKETCH_POINTS = 200
"""Values drawn per numeric feature from a sketch's quantile function (and from the reference's, alike)."""
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


class MonitorSettings(BaseSettings):
    """How the monitor flow judges drift and how often it may speak up."""

    model_config = SettingsConfigDict(env_prefix="FERRY_MONITOR_", extra="ignore")

    drift_share: float = Field(
        default=0.3, gt=0, le=1, description="Share of features that must drift for a source to count as drifted."
    )
    min_rows: int = Field(default=200, ge=1, description="Fewest new rows a source needs to be judged at all.")
    max_rows: int = Field(default=20_000, ge=100, description="Newest rows read per source and run (a sample cap).")
    cooldown_hours: float = Field(
        default=24.0, ge=0, description="After a retrain request, how long no other drift may ask for one."
    )
    renotify_hours: float = Field(
        default=72.0, ge=0, description="How long the same drift (source and drifted features) stays announced."
    )
    timeout_s: float = Field(default=300.0, gt=0, description="Evidently reports that take longer fail the run.")
    label_lookback_days: float = Field(
        default=30.0, gt=0, description="How far back logged predictions are joined with labels that arrive late."
    )


# -- state ---------------------------------------------------------------------------------------------------


@dataclass
class MonitorState:
    """What the monitor remembers between runs, kept in ``models/<model>/monitor/state.json``."""

    cursors: dict[str, str] = field(default_factory=dict)
    announced: dict[str, dict[str, Any]] = field(default_factory=dict)  # source -> {fingerprint, at}
    last_retrain_request: str | None = None

    @classmethod
    def load(cls, registry: Registry, model: str) -> MonitorState:
        fs, root = _fs(registry)
        try:
            raw = json.loads(storage.read_bytes(fs, _path(root, model, "monitor", "state.json")))
        except FileNotFoundError:
            return cls()
        except ValueError as exc:
            raise FerryError(
                f"monitor state of {model!r} is not valid JSON ({exc}); delete it to start afresh"
            ) from exc
        return cls(
            cursors=dict(raw.get("cursors", {})),
            announced=dict(raw.get("announced", {})),
            last_retrain_request=raw.get("last_retrain_request"),
        )

    def save(self, registry: Registry, model: str) -> None:
        fs, root = _fs(registry)
        data = json.dumps(asdict(self), indent=2, sort_keys=True).encode()
        storage.atomic_write_bytes(fs, _path(root, model, "monitor", "state.json"), data)


def _fs(registry: Registry) -> tuple[Any, str]:
    return storage.open_fs(registry.url)


def _path(root: str, model: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), "models", model, *parts])


def _files_after(fs: Any, directory: str, cursor: str | None, suffixes: tuple[str, ...]) -> list[str]:
    """Files below ``directory`` whose path relative to it sorts after ``cursor`` (names sort by time)."""
    try:
        found = fs.find(directory)
    except FileNotFoundError:
        return []
    prefix = directory.rstrip("/") + "/"
    names = sorted(
        str(p)[len(prefix) :]
        for p in found
        if str(p).endswith(suffixes) and not str(p).rpartition("/")[2].startswith((".", "_"))
    )
    return [n for n in names if cursor is None or n > cursor]


# -- sources -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceData:
    """New rows of one source: features (and ``p_positive`` when known), the versions that produced them, and the
    cursor to save once they are judged."""

    source: str
    frame: pd.DataFrame
    rows: int
    versions: dict[str, int]
    cursor: str | None


def _read_parquets(fs: Any, directory: str, names: Sequence[str]) -> pd.DataFrame:
    frames = []
    for name in names:
        with fs.open(f"{directory.rstrip('/')}/{name}", "rb") as fh:
            frames.append(pq.read_table(io.BytesIO(fh.read())).to_pandas())
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _versions(frame: pd.DataFrame) -> dict[str, int]:
    if "version" not in frame.columns or frame.empty:
        return {}
    return {str(k): int(v) for k, v in frame["version"].value_counts().items()}


def online_since(registry: Registry, model: str, cursor: str | None, *, max_rows: int) -> SourceData | None:
    """Answers the online service logged after ``cursor`` (shadow answers left out), newest ``max_rows`` kept; None
    when nothing is new."""
    fs, root = _fs(registry)
    directory = _path(root, model, "online", "predictions")
    names = _files_after(fs, directory, cursor, (".parquet",))
    if not names:
        return None
    frame = _read_parquets(fs, directory, names)
    if "role" in frame.columns:
        frame = frame[frame["role"] != "shadow"]
    frame = frame.tail(max_rows).reset_index(drop=True)
    return SourceData("online", frame, len(frame), _versions(frame), names[-1])


def feedback_since(registry: Registry, model: str, cursor: str | None) -> tuple[pd.DataFrame | None, str | None]:
    """Labels sent to the service's ``/feedback`` after ``cursor`` (prediction_id, label), and the new cursor."""
    fs, root = _fs(registry)
    directory = _path(root, model, "online", "feedback")
    names = _files_after(fs, directory, cursor, (".parquet",))
    if not names:
        return None, cursor
    frame = _read_parquets(fs, directory, names)
    labels = frame[["prediction_id", "label"]].astype(str)
    return labels, names[-1]


def record_batch_input(
    registry: Registry,
    model: str,
    sample: pd.DataFrame,
    *,
    version: str,
    run: str,
) -> str:
    """Keep a sample of a batch run's input (features and ``p_positive``) where the monitor flow reads it."""
    fs, root = _fs(registry)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = _path(root, model, "batch", "inputs", f"{stamp}-{uuid.uuid4().hex[:8]}.parquet")
    frame = sample.assign(version=version, run=run)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    storage.atomic_write_bytes(fs, path, buffer.getvalue())
    return path


def batch_since(registry: Registry, model: str, cursor: str | None, *, max_rows: int) -> SourceData | None:
    """Input samples of the batch runs recorded after ``cursor``."""
    fs, root = _fs(registry)
    directory = _path(root, model, "batch", "inputs")
    names = _files_after(fs, directory, cursor, (".parquet",))
    if not names:
        return None
    frame = _read_parquets(fs, directory, names).tail(max_rows).reset_index(drop=True)
    return SourceData("batch", frame, len(frame), _versions(frame), names[-1])


def _heartbeats(fs: Any, directory: str, names: Sequence[str]) -> Iterable[dict[str, Any]]:
    """Heartbeats from JSON files (a folder collector) or from the online service's Parquet telemetry log."""
    for name in names:
        with fs.open(f"{directory.rstrip('/')}/{name}", "rb") as fh:
            raw = fh.read()
        if name.endswith(".parquet"):
            for row in pq.read_table(io.BytesIO(raw)).to_pylist():
                sketch = row.get("sketch")
                yield {
                    **{k: row.get(k) for k in ("id", "device", "model", "channel", "version", "sha256", "sent_at")},
                    "health": {"ok": row.get("ok"), "last_error": row.get("last_error"), "stale": row.get("stale")},
                    "sketch": json.loads(sketch) if sketch else None,
                }
            continue
        text = raw.decode("utf-8", errors="replace")
        for line in text.splitlines() if name.endswith(".jsonl") else [text]:
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError:
                    continue  # a torn or foreign file is skipped, not fatal


def edge_since(
    registry: Registry, model: str, schema: Schema, cursor: str | None, *, folder: str | None = None
) -> tuple[list[SourceData], list[dict[str, Any]], str | None]:
    """Edge heartbeats after ``cursor``: one source per cohort (the channel a device follows), made of the drift
    sketches of its devices; also each device's latest heartbeat (for ``ferry status``) and the new cursor.

    Heartbeats come from the online service's telemetry log in the registry, or from ``folder`` (a folder
    collector). A heartbeat delivered twice (an agent resends one whose answer it missed) counts once.
    """
    fs, root = storage.open_fs(folder) if folder else _fs(registry)
    directory = root if folder else _path(root, model, "online", "telemetry")
    names = _files_after(fs, directory, cursor, (".json", ".jsonl") if folder else (".parquet",))
    if not names:
        return [], [], cursor
    sketches: dict[str, list[dict[str, Any]]] = {}
    versions: dict[str, dict[str, int]] = {}
    latest: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for beat in _heartbeats(fs, directory, names):
        if beat.get("model") not in (None, model) or beat.get("id") in seen:
            continue
        if beat.get("id"):
            seen.add(str(beat["id"]))
        device = str(beat.get("device"))
        if device not in latest or str(beat.get("sent_at", "")) >= str(latest[device].get("sent_at", "")):
            latest[device] = beat
        sketch = beat.get("sketch")
        if not sketch or not sketch.get("rows"):
            continue
        cohort = str(beat.get("channel") or "edge")
        sketches.setdefault(cohort, []).append(sketch)
        per = versions.setdefault(cohort, {})
        per[str(beat.get("version"))] = per.get(str(beat.get("version")), 0) + int(sketch["rows"])
    sources = []
    for cohort, parts in sorted(sketches.items()):
        frame = sketch_frame(parts, schema)
        rows = sum(int(p["rows"]) for p in parts)
        sources.append(SourceData(f"edge:{cohort}", frame, rows, versions[cohort], None))
    return sources, list(latest.values()), names[-1]


def _from_quantiles(quantiles: Sequence[float], n: int) -> np.ndarray:
    """``n`` values spread evenly over the quantile function given at QUANTILES (linear between, flat outside)."""
    probs = (np.arange(n) + 0.5) / n
    return np.interp(probs, QUANTILES, np.asarray(quantiles, dtype=np.float64))


def sketch_frame(sketches: Sequence[Mapping[str, Any]], schema: Schema, *, points: int = SKETCH_POINTS) -> pd.DataFrame:
    """A frame that stands for device inputs known only through drift sketches (edge telemetry).

    Numeric features: values drawn evenly from each sketch's quantile function (in proportion to its rows) plus
    its missing values; categorical features: categories in the sketched proportions. The reference goes through
    the same transformation (:func:`reference_sketch`) so both sides lose the same detail.
    """
    total = sum(int(s.get("rows", 0)) for s in sketches)
    if total <= 0:
        raise FerryError("the drift sketches hold no rows")
    columns: dict[str, list[Any]] = {}
    for f in schema.features:
        values: list[Any] = []
        for s in sketches:
            share = int(s.get("rows", 0)) / total
            n = max(1, round(points * share))
            if f.type == "numeric":
                part = s.get("numeric", {}).get(f.name, {})
                count, missing = int(part.get("count", 0)), int(part.get("missing", 0))
                qs = [part.get("quantiles", {}).get(f"p{int(q * 100)}") for q in QUANTILES]
                seen = count + missing
                n_missing = round(n * missing / seen) if seen else n
                if None in qs or not count:
                    values += [math.nan] * n
                    continue
                values += _from_quantiles([float(q) for q in qs], n - n_missing).tolist() + [math.nan] * n_missing
            else:
                part = s.get("categorical", {}).get(f.name, {})
                counts = {**part.get("counts", {}), **({"<other>": part["other"]} if part.get("other") else {})}
                if part.get("missing"):
                    counts["<missing>"] = part["missing"]
                seen = sum(counts.values())
                if not seen:
                    values += [None] * n
                    continue
                for cat, c in counts.items():
                    values += [None if cat == "<missing>" else cat] * round(n * c / seen)
        columns[f.name] = values
    length = min(len(v) for v in columns.values())
    return pd.DataFrame({k: v[:length] for k, v in columns.items()})


def reference_sketch(reference: pd.DataFrame, schema: Schema, *, top_k: int = 50) -> dict[str, Any]:
    """The reference summarised exactly as a device's DriftSketch summarises its inputs."""
    numeric, categorical = {}, {}
    for f in schema.features:
        col = reference[f.name]
        if f.type == "numeric":
            values = pd.to_numeric(col, errors="coerce").dropna().to_numpy(dtype=np.float64)
            qs = np.quantile(values, QUANTILES).tolist() if len(values) else []
            numeric[f.name] = {
                "count": len(values),
                "missing": int(col.isna().sum()),
                "quantiles": dict(zip([f"p{int(q * 100)}" for q in QUANTILES], qs, strict=False)),
            }
        else:
            counts = col.dropna().astype(str).value_counts()
            top = {str(k): int(v) for k, v in counts.head(top_k).items()}
            categorical[f.name] = {
                "missing": int(col.isna().sum()),
                "counts": top,
                "other": int(counts.sum()) - sum(top.values()),
            }
    return {"rows": len(reference), "numeric": numeric, "categorical": categorical}


# -- judging -------------------------------------------------------------------------------------------------


def reference_of(registry: Registry, version: ModelVersion) -> tuple[pd.DataFrame, Schema]:
    """The version's reference sample (training rows kept for drift checks) with ``p_positive`` scored by its own
    ONNX model, and its schema."""
    from ferry.data import to_onnx_inputs
    from ferry.scoring import OnnxScorer

    schema = Schema.from_dict(json.loads(registry.read_bytes(version, "schema.json")))
    try:
        reference = pd.read_parquet(io.BytesIO(registry.read_bytes(version, "reference.parquet")))
    except FileNotFoundError as exc:
        raise FerryError(f"version {version.id} has no reference.parquet; it cannot be monitored for drift") from exc
    scores = OnnxScorer(registry.read_bytes(version, "model.onnx")).score(to_onnx_inputs(reference, schema))
    reference = reference.assign(**{PREDICTION: np.asarray(scores.probabilities)[:, -1].astype(np.float64)})
    return reference, schema


@dataclass(frozen=True)
class Judgement:
    """One source judged against the reference."""

    source: str
    rows: int
    versions: dict[str, int]
    input: gate.DriftResult | None
    prediction: gate.DriftResult | None
    report: str | None
    skipped: str | None = None  # why the source was not judged (too few rows)

    @property
    def drifted(self) -> bool:
        return bool(self.input and self.input.drifted) or bool(self.prediction and self.prediction.drifted)

    @property
    def fingerprint(self) -> str:
        features = sorted(self.input.drifted_features) if self.input else []
        prediction = ["<prediction>"] if self.prediction and self.prediction.drifted else []
        return ",".join(features + prediction)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": self.rows,
            "versions": self.versions,
            "drifted": self.drifted,
            "drifted_share": self.input.drifted_share if self.input else None,
            "drifted_features": list(self.input.drifted_features) if self.input else [],
            "prediction_drift": None if self.prediction is None else self.prediction.drifted,
            "prediction_score": self.prediction.columns[0].score if self.prediction else None,
            "report": self.report,
            "skipped": self.skipped,
            "fingerprint": self.fingerprint,
        }


def judge(
    data: SourceData,
    reference: pd.DataFrame,
    schema: Schema,
    settings: MonitorSettings,
    *,
    report_dir: Path | None = None,
    run: str = "run",
) -> Judgement:
    """Evidently's input drift (and prediction drift when ``p_positive`` is known) of one source."""
    if data.rows < settings.min_rows:
        why = f"{data.rows} new rows, fewer than min_rows={settings.min_rows}"
        return Judgement(data.source, data.rows, data.versions, None, None, None, skipped=why)
    edge = data.source.startswith("edge:")
    ref = sketch_frame([reference_sketch(reference, schema)], schema) if edge else reference
    html = None
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        html = report_dir / f"{run}-{data.source.replace(':', '-').replace('/', '-')}.html"
    drift = gate.input_drift(
        ref, data.frame, schema, drift_share=settings.drift_share, timeout_s=settings.timeout_s, html_path=html
    )
    prediction = None
    if PREDICTION in data.frame.columns and data.frame[PREDICTION].notna().any():
        prediction = gate.data_drift(
            reference, data.frame.dropna(subset=[PREDICTION]), numeric=[PREDICTION], timeout_s=settings.timeout_s
        )
    return Judgement(data.source, data.rows, data.versions, drift, prediction, str(html) if html else None)


def label_metrics(joined: pd.DataFrame, positive: str) -> dict[str, float]:
    """Labelled count, accuracy and (with both classes present) ROC AUC of predictions joined with labels."""
    from sklearn.metrics import roc_auc_score

    y = joined["label"].astype(str)
    truth = (y == positive).to_numpy()
    pred = (joined["prediction"].astype(str) == positive).to_numpy()
    out: dict[str, float] = {"labelled": float(len(joined)), "accuracy": float((pred == truth).mean())}
    if len(set(truth.tolist())) == 2:
        out["roc_auc"] = float(roc_auc_score(truth, joined[PREDICTION].to_numpy(dtype=np.float64)))
    return out


def read_labels(url: str) -> pd.DataFrame:
    """A labels file (CSV or Parquet, local or any fsspec URL) with ``prediction_id`` and ``label`` columns.

    Both are read as text, so ids never turn into numbers and a label 1 stays "1" (not "1.0").
    """
    from ferry.errors import DataError, DataFormatError

    try:
        if url.lower().endswith((".parquet", ".pq")):
            frame = pd.read_parquet(url)
        else:
            frame = pd.read_csv(url, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"labels file {url} cannot be read: {exc}") from exc
    missing = [c for c in ("prediction_id", "label") if c not in frame.columns]
    if missing:
        raise DataError(f"labels file {url} has no column(s) {missing}; it needs prediction_id and label")
    out = frame[["prediction_id", "label"]]
    out = out[(out["prediction_id"].astype(str) != "") & out["label"].notna()]
    label = out["label"]
    if pd.api.types.is_float_dtype(label) and (label == label.round()).all():
        label = label.astype("int64")
    return pd.DataFrame({"prediction_id": out["prediction_id"].astype(str), "label": label.astype(str)})


def logged_since(registry: Registry, model: str, days: float) -> pd.DataFrame:
    """Online predictions logged in the last ``days`` days (answers and shadow answers), to join late labels to."""
    return online_logs_since(registry, model, "predictions", datetime.now(UTC) - timedelta(days=days))


def online_logs_since(registry: Registry, model: str, kind: str, since: datetime) -> pd.DataFrame:
    """Rows of the online service's ``kind`` log (predictions, feedback, telemetry) written at ``since`` or later."""
    fs, root = _fs(registry)
    directory = _path(root, model, "online", kind)
    day = since.strftime("%Y-%m-%d")
    names = [n for n in _files_after(fs, directory, None, (".parquet",)) if n[:10] >= day]  # in <date>/ folders
    frame = _read_parquets(fs, directory, names)
    if "ts" in frame.columns:
        frame = frame[pd.to_datetime(frame["ts"], utc=True) >= since]
    out: pd.DataFrame = frame.reset_index(drop=True)
    return out


def quality_by_version(predictions: pd.DataFrame, labels: pd.DataFrame, positive: str) -> dict[str, dict[str, float]]:
    """Each version's quality on the labelled predictions it made (a shadow version's too, as ``<id> (shadow)``)."""
    if predictions.empty or labels.empty:
        return {}
    joined = predictions.merge(labels[["prediction_id", "label"]], on="prediction_id", how="inner")
    out: dict[str, dict[str, float]] = {}
    role = joined["role"] if "role" in joined.columns else pd.Series("answer", index=joined.index)
    for (version, r), part in joined.groupby([joined["version"], role]):
        out[f"{version} (shadow)" if r == "shadow" else str(version)] = label_metrics(part, positive)
    return out


# -- policy --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Announcement:
    """What the monitor says about one drifted source: announce it (an event), and whether to ask for a retrain."""

    source: str
    announce: bool
    retrain: bool
    why: str


class Verdict(Protocol):
    """What the policy needs of a judgement (a :class:`Judgement`, or a :class:`Seen` rebuilt from one's dict)."""

    @property
    def source(self) -> str: ...
    @property
    def drifted(self) -> bool: ...
    @property
    def fingerprint(self) -> str: ...


@dataclass(frozen=True)
class Seen:
    source: str
    drifted: bool
    fingerprint: str


@dataclass(frozen=True)
class Policy:
    """Alert fatigue, on purpose: dedupe the same drift and cool down between retrain requests."""

    settings: MonitorSettings

    def decide(self, state: MonitorState, judgements: Sequence[Verdict], now: datetime) -> list[Announcement]:
        out: list[Announcement] = []
        retrain_asked = False
        last = _parse(state.last_retrain_request)
        cooling = last is not None and now - last < timedelta(hours=self.settings.cooldown_hours)
        for j in judgements:
            if not j.drifted:
                state.announced.pop(j.source, None)  # drift gone: the next drift is news again
                continue
            seen = state.announced.get(j.source)
            when = _parse(seen.get("at")) if seen else None
            fresh = when is not None and now - when < timedelta(hours=self.settings.renotify_hours)
            drifted = set(filter(None, j.fingerprint.split(",")))
            known = set(filter(None, str(seen.get("fingerprint", "")).split(","))) if seen and fresh else set()
            if seen and fresh and drifted <= known:
                out.append(Announcement(j.source, False, False, f"same drift announced at {seen['at']}"))
                continue
            if cooling or retrain_asked:
                why = (
                    f"retrain requested at {state.last_retrain_request}; cooldown {self.settings.cooldown_hours:g} h"
                    if cooling
                    else "a retrain is already requested by this run"
                )
                out.append(Announcement(j.source, True, False, why))
            else:
                retrain_asked = True
                news = sorted(drifted - known)
                out.append(Announcement(j.source, True, True, "new drift" + (f": {', '.join(news)}" if known else "")))
            state.announced[j.source] = {
                "fingerprint": ",".join(sorted(drifted | known)),
                "at": now.isoformat(timespec="seconds"),
            }
        if retrain_asked:
            state.last_retrain_request = now.isoformat(timespec="seconds")
        return out


def _parse(ts: str | None) -> datetime | None:
    if not ts:
        return None
    parsed = datetime.fromisoformat(ts)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def keep_report(registry: Registry, model: str, html: Path) -> str:
    """Copy an Evidently report (and its snapshot JSON) into ``monitor/reports/``; returns where it now is."""
    fs, root = _fs(registry)
    target = _path(root, model, "monitor", "reports", html.name)
    storage.atomic_write_bytes(fs, target, html.read_bytes())
    snapshot = html.with_suffix(".evidently.json")
    if snapshot.exists():
        storage.atomic_write_bytes(fs, target.removesuffix(".html") + ".evidently.json", snapshot.read_bytes())
    return target if storage.is_local(fs) else fs.unstrip_protocol(target)


def append_history(registry: Registry, model: str, entries: Sequence[Mapping[str, Any]]) -> None:
    """Add judgements to ``monitor/history.jsonl`` (rewritten atomically: the file stays small, one line a source
    and run)."""
    if not entries:
        return
    fs, root = _fs(registry)
    path = _path(root, model, "monitor", "history.jsonl")
    try:
        old = storage.read_bytes(fs, path)
    except FileNotFoundError:
        old = b""
    new = "".join(json.dumps(e, sort_keys=True, default=str) + "\n" for e in entries).encode()
    storage.atomic_write_bytes(fs, path, old + new)


def history(registry: Registry, model: str) -> list[dict[str, Any]]:
    fs, root = _fs(registry)
    try:
        text = storage.read_bytes(fs, _path(root, model, "monitor", "history.jsonl")).decode()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]
