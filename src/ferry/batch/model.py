"""The model a batch run scores with: which version (pinned, else the ``batch`` channel, else ``online/champion``),
loaded once per process, and its explainer (``ferry score --explain``), also loaded once per process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from ferry.batch.settings import BatchSettings
from ferry.errors import RegistryError
from ferry.explain import Explainer, load_explainer
from ferry.registry.store import Registry
from ferry.registry.versions import ModelVersion
from ferry.schema import Schema
from ferry.scoring import OnnxScorer

__all__ = ["LoadedModel", "load_batch_explainer", "load_model", "resolve_version"]


@dataclass(frozen=True)
class LoadedModel:
    version: ModelVersion
    schema: Schema
    scorer: OnnxScorer = field(repr=False)


def resolve_version(
    registry: Registry, *, version: str | None = None, model: str | None = None, settings: BatchSettings | None = None
) -> ModelVersion:
    """The version to score with: ``version`` when given, else ``settings.channel``, else its fallback channel."""
    if version:
        return registry.get(version, model=model)
    s = settings or BatchSettings()
    if model is None:
        names = registry.models()
        if len(names) != 1:
            have = f"it holds {names}" if names else "it holds no models yet; train one first"
            raise RegistryError(f"registry {registry.url} needs a model name to pick a version: {have}")
        model = names[0]
    for channel in (s.channel, s.fallback_channel):
        vid = registry.channel(model, channel)
        if vid is not None:
            return registry.get(vid, model=model)
    raise RegistryError(
        f"model {model!r} has no version on channel {s.channel!r} nor on {s.fallback_channel!r}; promote one "
        f"(ferry promote VERSION --channel {s.channel}) or pass a version"
    )


@functools.lru_cache(maxsize=4)
def _load_cached(registry_url: str, model: str, version_id: str, threads: int) -> LoadedModel:
    registry = Registry(registry_url)
    v = registry.get(version_id, model=model)
    schema = registry.schema(v)
    return LoadedModel(v, schema, OnnxScorer(registry.read_bytes(v, "model.onnx"), intra_op_threads=threads))


def load_model(registry_url: str, model: str, version_id: str, *, threads: int = 1) -> LoadedModel:
    """The version's schema and an onnxruntime session over its ``model.onnx`` (cached per process)."""
    return _load_cached(registry_url, model, version_id, threads)


@functools.lru_cache(maxsize=4)
def _explainer_cached(registry_url: str, model: str, version_id: str) -> Explainer:
    registry = Registry(registry_url)
    v = registry.get(version_id, model=model)
    stored = load_explainer(registry, v)
    # one row per onnxruntime call, the explainer's default: the same bits as a single-record online or device call
    return Explainer(registry.read_bytes(v, "model.onnx"), stored.schema, stored.background, plan=stored.plan)


def load_batch_explainer(registry_url: str, model: str, version_id: str) -> Explainer:
    """The version's explainer (its ``model.onnx``, plan and background), explaining one row per onnxruntime call
    and cached per process like the scorer; :class:`ferry.errors.BackgroundMissing` when the version carries no
    ``explain.npz``."""
    return _explainer_cached(registry_url, model, version_id)
