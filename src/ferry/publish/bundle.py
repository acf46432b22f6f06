"""Edge bundles: one registered version's ``model.onnx`` plus a manifest, packed as a deterministic tar file.

``bundle.tar`` holds these regular files, in this order::

    bundle.json   format, model, version, task, input schema, output names, opsets, model sha256, gate summary,
                  a regressor's interval, a golden sample (input rows with what model.onnx answered for them),
                  and ``explain_sha256`` when the bundle carries explain.npz
    model.onnx    the same bytes batch and online run
    explain.npz   the version's explanation file (:mod:`ferry.explain.store`: background and coalition plan), when
                  the version has one; a version registered before explanations has none, and its bundle still
                  builds (the device then says the version cannot be explained)

The golden sample's outputs follow the task (:mod:`ferry.scoring`'s contract): ``labels`` (class indexes) and
``probabilities`` for a classifier; ``value``, ``lower`` and ``upper`` for a regressor. A version whose bundle cannot
be built (unreadable files, a model that does not answer its task on the golden rows) raises
:class:`~ferry.errors.BundleError`; :func:`ferry.publish.check_publishable` builds it before any channel moves.

The tar is built byte-for-byte reproducibly (fixed order, mtime, owner and mode), so publishing the same version
twice yields the same sha256 and the TUF target does not change. Devices verify the bundle through TUF before
they open it, then refuse any member other than these, and any whose sha256 differs from the manifest's.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import pandas as pd

from ferry.data import to_onnx_inputs
from ferry.errors import BundleError
from ferry.explain.store import EXPLAIN_FILE, ExplainFile
from ferry.registry import ModelVersion, Registry
from ferry.schema import Schema
from ferry.scoring import OnnxScorer, Scores, ValueScores
from ferry.storage import sha256_bytes

__all__ = ["BUNDLE_FORMAT", "GOLDEN_ROWS", "MEMBERS", "Bundle", "build_bundle", "golden_outputs"]

BUNDLE_FORMAT = 1
MEMBERS = ("bundle.json", "model.onnx", EXPLAIN_FILE)
"""Every member a bundle may hold, in the order it is packed; ``explain.npz`` only when the version has one."""
GOLDEN_ROWS = 32


@dataclass(frozen=True)
class Bundle:
    data: bytes
    manifest: dict[str, Any]

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.data)


def _golden_rows(reference: pd.DataFrame, schema: Schema, n: int) -> list[dict[str, Any]]:
    """JSON rows that round-trip exactly: numerics as float32 values (exact in JSON), missing as null."""
    inputs = to_onnx_inputs(reference.head(n), schema)
    rows: list[dict[str, Any]] = []
    for i in range(min(n, len(reference))):
        row: dict[str, Any] = {}
        for f in schema.features:
            value = inputs[f.name][i, 0]
            if f.type == "numeric":
                row[f.name] = None if np.isnan(value) else float(value)
            else:
                row[f.name] = None if value == "" else str(value)
        rows.append(row)
    return rows


def golden_outputs(found: Scores | ValueScores, schema: Schema, n: int) -> dict[str, Any]:
    """What the model answered for the golden rows, per task, checked against the schema's task and classes."""
    if isinstance(found, ValueScores):
        if schema.kind != "regression":
            raise BundleError(f"the schema declares a {schema.kind} target, but model.onnx answers a value")
        parts = {"value": found.values, "lower": found.lower, "upper": found.upper}
        if any(a.shape != (n,) or not np.isfinite(a).all() for a in parts.values()):
            raise BundleError("model.onnx answered the golden rows with values of the wrong shape, NaN or infinity")
        return {name: [float(v) for v in a] for name, a in parts.items()}
    if schema.kind == "regression":
        raise BundleError("the schema declares a regression target, but model.onnx answers class scores")
    k = len(schema.target_classes)
    if found.probabilities.shape != (n, k) or not np.isfinite(found.probabilities).all():
        raise BundleError(
            f"model.onnx answered the golden rows with probabilities of shape {found.probabilities.shape}, not "
            f"({n}, {k}) finite ones"
        )
    return {
        "probabilities": [[float(p) for p in r] for r in found.probabilities],
        "labels": [int(x) for x in found.labels],
    }


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in (m for m in MEMBERS if m in members):
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(members[name]))
    return buf.getvalue()


def build_bundle(registry: Registry, version: ModelVersion, *, golden_rows: int = GOLDEN_ROWS) -> Bundle:
    """The bundle of ``version``: its model.onnx, schema, gate summary and a golden sample scored by model.onnx.

    BundleError, naming the version, when it cannot be built."""
    try:
        return _build(registry, version, golden_rows)
    except BundleError as exc:
        raise BundleError(f"the edge bundle of {version.model}/{version.id} cannot be built: {exc}") from exc
    except Exception as exc:  # unreadable files, a model onnxruntime cannot load or run: any of them stops it
        raise BundleError(
            f"the edge bundle of {version.model}/{version.id} cannot be built: {type(exc).__name__}: {exc}"
        ) from exc


def _build(registry: Registry, version: ModelVersion, golden_rows: int) -> Bundle:
    model = registry.read_bytes(version, "model.onnx")
    schema = Schema.from_dict(json.loads(registry.read_bytes(version, "schema.json")), source="schema.json")
    reference = pd.read_parquet(io.BytesIO(registry.read_bytes(version, "reference.parquet")))
    rows = _golden_rows(reference, schema, golden_rows)
    scorer = OnnxScorer(model)
    found = scorer.answer(to_onnx_inputs(pd.DataFrame(rows, columns=list(schema.feature_names)), schema))
    parsed = onnx.load_from_string(model)
    gate = version.info.get("gate", {})
    manifest: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "model": version.model,
        "version": version.id,
        "created_at": version.created_at,
        "model_sha256": sha256_bytes(model),
        "schema": schema.to_dict(),
        "inputs": [{"name": f.name, "type": "float32" if f.type == "numeric" else "string"} for f in schema.features],
        "outputs": [o.name for o in parsed.graph.output],
        "opsets": {op.domain or "ai.onnx": op.version for op in parsed.opset_import},
        "gate": {"passed": gate.get("passed"), "checks": gate.get("checks"), "failed": gate.get("failed")},
        "task": scorer.task,
        "golden": {"rows": rows, **golden_outputs(found, schema, len(rows))},
    }
    if isinstance(found, ValueScores):
        manifest["interval"] = {"coverage": None if math.isnan(found.coverage) else found.coverage}
    members = {"model.onnx": model}
    if EXPLAIN_FILE in version.files:
        members[EXPLAIN_FILE] = _explain_file(registry.read_bytes(version, EXPLAIN_FILE), schema)
        manifest["explain_sha256"] = sha256_bytes(members[EXPLAIN_FILE])
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    return Bundle(data=_tar({"bundle.json": body, **members}), manifest=manifest)


def _explain_file(data: bytes, schema: Schema) -> bytes:
    """The version's ``explain.npz``, checked to be one and to cover the schema's features in order."""
    try:
        stored = ExplainFile.from_bytes(data)
    except ValueError as exc:
        raise BundleError(str(exc)) from None
    if stored.features != tuple(schema.feature_names):
        raise BundleError(
            f"{EXPLAIN_FILE} covers the features {list(stored.features)}, the schema {list(schema.feature_names)}"
        )
    return data
