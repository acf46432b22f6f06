"""The served model: follows a channel pointer, loads and warms a new version before it takes traffic.

A request takes :attr:`ModelHolder.current` once and uses that :class:`LoadedModel` to the end, so a swap (one
reference assignment) never mixes two versions in one answer and never interrupts a request. A version that
cannot be read, loaded or warmed is remembered as failed, logged, and never served; the previous one keeps serving.

The version's explainer (:mod:`ferry.explain`: its ``model.onnx`` with the plan and background of its
``explain.npz``) is loaded and warmed with it, once per version. A version registered before explanations existed
has no ``explain.npz``: it serves predictions, and ``/explain`` answers 409 with :attr:`LoadedModel.unexplained`
(which names the version and says to register it again). An ``explain.npz`` that cannot be read fails the version
like a damaged ``model.onnx`` does.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from ferry.data import to_onnx_inputs
from ferry.errors import BackgroundMissing, ConfigError
from ferry.explain import Explainer, load_explainer
from ferry.online.records import Served, prepare
from ferry.registry import ModelVersion, Registry
from ferry.schema import Schema
from ferry.scoring import OnnxScorer, Scores, ValueScores

__all__ = ["LoadedModel", "ModelHolder", "value_buckets", "warmup_records"]

log = logging.getLogger("ferry.online")


@dataclass(frozen=True)
class LoadedModel:
    """One version, loaded and warmed: everything a request needs."""

    version: ModelVersion
    served: Served
    scorer: OnnxScorer
    loaded_at: str
    value_buckets: tuple[float, ...] = ()  # a regressor's value histogram bounds (:mod:`ferry.online.metrics`)
    explainer: Explainer | None = None  # None: the version has no explain.npz, and ``unexplained`` says so
    unexplained: str = ""

    @property
    def id(self) -> str:
        return self.version.id

    @property
    def schema(self) -> Schema:
        return self.served.schema


def warmup_records(schema: Schema) -> list[dict[str, Any]]:
    """Two records inside every declared rule: one at the lower bounds, one with nullable features left null."""
    low: dict[str, Any] = {}
    value: Any
    sparse: dict[str, Any] = {}
    for f in schema.features:
        if f.type == "numeric":
            value = f.min if f.min is not None else (min(0.0, f.max) if f.max is not None else 0.0)
        else:
            value = f.levels[0] if f.levels else "unknown"
        low[f.name] = value
        sparse[f.name] = None if f.nullable else value
    return [low, sparse]


def _check_answer(found: Scores | ValueScores, n: int, schema: Schema) -> None:
    """The model answers the task its schema declares, in the shapes of :mod:`ferry.scoring`'s contract."""
    if schema.kind == "regression":
        if not isinstance(found, ValueScores):
            raise ValueError("the schema declares a regression target, but the model answers class scores")
        parts = (found.values, found.lower, found.upper)
        if any(np.asarray(a).shape != (n,) for a in parts):
            raise ValueError(f"the model answered shapes {[np.asarray(a).shape for a in parts]} for {n} rows")
        if (
            not all(np.all(np.isfinite(a)) for a in parts)
            or np.any(found.lower > found.values)
            or np.any(found.values > found.upper)
        ):
            raise ValueError("the model answered values that are not finite, or outside their own interval")
        return
    if not isinstance(found, Scores):
        raise ValueError(f"the schema declares a {schema.kind} target, but the model answers a value")
    probs = np.asarray(found.probabilities)
    labels = np.asarray(found.labels)
    k = len(schema.target_classes)
    if probs.shape != (n, k) or labels.shape != (n,):
        raise ValueError(
            f"the model answered shapes {labels.shape} and {probs.shape} for {n} rows, not ({n},), ({n}, {k})"
        )
    if not np.all(np.isfinite(probs)) or np.any(probs < 0) or np.any(probs > 1):
        raise ValueError("the model answered probabilities outside [0, 1]")


def value_buckets(scorer: OnnxScorer, reference: pd.DataFrame, schema: Schema) -> tuple[float, ...]:
    """A regressor's histogram bounds: the distinct deciles of its values on ``reference`` (empty for no rows)."""
    if reference.empty:
        return ()
    found = scorer.answer(to_onnx_inputs(reference, schema))
    assert isinstance(found, ValueScores)
    deciles = np.quantile(found.values.astype(np.float64), np.linspace(0.1, 0.9, 9))
    return tuple(sorted({float(np.float32(q)) for q in deciles}))


class ModelHolder:
    """Serves the version that ``channel`` of ``model`` points to (or the ``pinned`` version). No I/O here."""

    def __init__(
        self, registry: Registry, model: str, channel: str, *, intra_op_threads: int = 1, pinned: str | None = None
    ) -> None:
        self.registry = registry
        self.model = model
        self.channel = channel
        self.pinned = pinned
        self.intra_op_threads = intra_op_threads
        self.failures: dict[str, str] = {}
        self.reads = 0  # times the pointer was read (each refresh), for /metrics and tests
        self._current: LoadedModel | None = None
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def resolve_model(cls, registry: Registry, model: str | None) -> str:
        """``model``, or the only model in the registry when it is None."""
        if model is not None:
            return model
        models = registry.models()
        if len(models) != 1:
            found = ", ".join(models) or "none"
            raise ConfigError(f"set FERRY_ONLINE_MODEL: the registry {registry.url!r} holds {found}, not exactly one")
        return models[0]

    @property
    def current(self) -> LoadedModel | None:
        """The model that answers requests now; None until one is loaded and warmed."""
        return self._current

    @property
    def ready(self) -> bool:
        return self._current is not None

    def load(self, version_id: str) -> LoadedModel:
        """Read, load and warm ``version_id``; raises when any step fails (nothing is swapped here)."""
        version = self.registry.get(version_id, model=self.model)
        raw = json.loads(self.registry.read_bytes(version, "schema.json"))
        schema = Schema.from_dict(raw, source=f"{version.model}/{version.id} schema.json")
        served = Served.of(schema)
        scorer = OnnxScorer(self.registry.read_bytes(version, "model.onnx"), intra_op_threads=self.intra_op_threads)
        records = warmup_records(schema)
        for batch in (records[:1], records):
            _check_answer(scorer.answer(prepare(batch, served)), len(batch), schema)
        explainer: Explainer | None = None
        unexplained = ""
        try:
            explainer = load_explainer(self.registry, version)
        except BackgroundMissing as exc:
            unexplained = str(exc)
            log.warning("%s; /explain answers 409 for it", exc)
        else:
            explainer.explain(prepare(records[:1], served), top_k=1)  # warm the explainer's session too
        buckets: tuple[float, ...] = ()
        if schema.kind == "regression" and "reference.parquet" in version.files:
            reference = pd.read_parquet(io.BytesIO(self.registry.read_bytes(version, "reference.parquet")))
            buckets = value_buckets(scorer, reference.head(1000), schema)
        loaded_at = datetime.now(UTC).isoformat(timespec="seconds")
        return LoadedModel(version, served, scorer, loaded_at, buckets, explainer, unexplained)

    def refresh(self) -> LoadedModel | None:
        """Read the pointer; when it names a new version, load and warm it, then swap. Returns the current model.

        Errors reading the pointer or loading the version are logged and leave the current model serving.
        """
        with self._refresh_lock:
            self.reads += 1
            target: str | None
            try:
                if self.pinned is not None:
                    target = self.registry.get(self.pinned, model=self.model).id
                else:
                    target = self.registry.channel(self.model, self.channel)
            except Exception as exc:
                log.error("cannot read channel %s of %s: %s", self.channel, self.model, exc)
                return self._current
            if target is None or target in self.failures:
                return self._current
            if self._current is not None and self._current.id == target:
                return self._current
            try:
                loaded = self.load(target)
            except Exception as exc:
                self.failures[target] = f"{type(exc).__name__}: {exc}"
                log.error(
                    "version %s of %s (channel %s) failed to load or warm up and gets no traffic: %s",
                    target, self.model, self.channel, self.failures[target],
                )  # fmt: skip
                return self._current
            previous = self._current
            self._current = loaded
            log.info(
                "serving %s/%s from channel %s (was %s)",
                self.model, loaded.id, self.channel, previous.id if previous else "nothing",
            )  # fmt: skip
            return loaded

    def start(self, interval_s: float) -> None:
        """Poll the pointer every ``interval_s`` seconds in a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()

        def run() -> None:
            while not self._stop.wait(interval_s):
                self.refresh()

        self._thread = threading.Thread(target=run, name=f"ferry-online-poll-{self.model}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
