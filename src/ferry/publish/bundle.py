"""Edge bundles: one registered version's ``model.onnx`` plus a manifest, packed as a deterministic tar file.

``bundle.tar`` holds exactly two regular files::

    bundle.json   format, model, version, input schema, output names, opsets, model sha256, gate summary, and a
                  golden sample: input rows with the probabilities and labels model.onnx gave for them
    model.onnx    the same bytes batch and online run

The tar is built byte-for-byte reproducibly (fixed order, mtime, owner and mode), so publishing the same version
twice yields the same sha256 and the TUF target does not change. Devices verify the bundle through TUF before
they open it, then refuse any member other than these two.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import pandas as pd

from ferry.data import to_onnx_inputs
from ferry.registry import ModelVersion, Registry
from ferry.schema import Schema
from ferry.scoring import OnnxScorer
from ferry.storage import sha256_bytes

__all__ = ["BUNDLE_FORMAT", "GOLDEN_ROWS", "MEMBERS", "Bundle", "build_bundle"]

BUNDLE_FORMAT = 1
MEMBERS = ("bundle.json", "model.onnx")
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


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in MEMBERS:
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(members[name]))
    return buf.getvalue()


def build_bundle(registry: Registry, version: ModelVersion, *, golden_rows: int = GOLDEN_ROWS) -> Bundle:
    """The bundle of ``version``: its model.onnx, schema, gate summary and a golden sample scored by model.onnx."""
    model = registry.read_bytes(version, "model.onnx")
    schema = Schema.from_dict(json.loads(registry.read_bytes(version, "schema.json")), source="schema.json")
    reference = pd.read_parquet(io.BytesIO(registry.read_bytes(version, "reference.parquet")))
    rows = _golden_rows(reference, schema, golden_rows)
    scores = OnnxScorer(model).score(to_onnx_inputs(pd.DataFrame(rows, columns=list(schema.feature_names)), schema))
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
        "golden": {
            "rows": rows,
            "probabilities": [[float(p) for p in r] for r in scores.probabilities],
            "labels": [int(x) for x in scores.labels],
        },
    }
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    return Bundle(data=_tar({"bundle.json": body, "model.onnx": model}), manifest=manifest)
