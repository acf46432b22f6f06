"""The online service's composition root: every part one service process runs, built from its settings.

:class:`OnlineApp` wires the model holders, router, logs and their flusher, prediction ids, metrics, the tarpit,
answerer and heartbeat collector, starts their threads and stops them. It knows nothing of BentoML:
``bentos/online/service.py`` creates one per worker and only adapts its methods to BentoML's API decorators, so the
whole service can also be built and driven in plain Python.

A new app first writes the rows a killed predecessor acknowledged (recovered from the write-ahead files, see
:mod:`ferry.online.wal`), then loads and warms the version its channel points to.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ferry import storage
from ferry.explain import ExplainSettings
from ferry.online.answer import Answerer
from ferry.online.holder import LoadedModel, ModelHolder
from ferry.online.ids import PredictionIds
from ferry.online.logs import FeedbackLog, Flusher, PredictionLog
from ferry.online.metrics import OnlineMetrics
from ferry.online.predict import FeedbackAck, FeedbackItem, ModelInfo, check_feedback, model_info
from ferry.online.records import RequestRejected
from ferry.online.routing import Router
from ferry.online.settings import OnlineSettings
from ferry.online.tarpit import Tarpit
from ferry.online.telemetry import Collector, TelemetryAck, TelemetryLog
from ferry.registry import Registry, layout

__all__ = ["OnlineApp"]


class OnlineApp:
    """One service process: ``model`` and ``version`` are used when the settings name none (a bento's arguments)."""

    def __init__(
        self, settings: OnlineSettings | None = None, *, model: str | None = None, version: str | None = None
    ) -> None:
        self.settings = settings = settings if settings is not None else OnlineSettings()
        registry = Registry.from_settings()
        # FERRY_ONLINE_* settings win over the arguments a bento was built with, so an operator can still move it.
        self.model = model = ModelHolder.resolve_model(registry, settings.model or model)
        threads = settings.intra_op_threads
        self.holder = ModelHolder(
            registry, model, settings.channel, intra_op_threads=threads, pinned=settings.version or version
        )
        self.challenger: ModelHolder | None = None
        if settings.routing != "champion":
            self.challenger = ModelHolder(registry, model, settings.challenger_channel, intra_op_threads=threads)
        self.router = Router(settings.routing, settings.challenger_percent)
        self.metrics = OnlineMetrics(
            suspect_refusals=settings.suspect_refusals, suspect_window_s=settings.suspect_window_s
        )
        self.tarpit = Tarpit(self.metrics, delay_s=settings.tarpit_s, max_held=settings.tarpit_max)
        buffer = settings.log_buffer_rows
        self.prediction_log = PredictionLog(
            registry.url, model, sample_rate=settings.prediction_sample_rate, buffer_rows=buffer
        )
        wal = _wal_root(settings, registry.url, model)
        self.feedback_log = FeedbackLog(registry.url, model, buffer_rows=buffer, wal_dir=wal / "feedback")
        self.telemetry_log = TelemetryLog(registry.url, model, buffer_rows=buffer, wal_dir=wal / "telemetry")
        self.flusher = Flusher(
            [self.prediction_log, self.feedback_log, self.telemetry_log], settings.log_flush_interval_s
        )
        id_key = settings.id_key.get_secret_value() if settings.id_key is not None else None
        self.ids = PredictionIds.for_model(registry.url, model, key=id_key)
        explaining = ExplainSettings()
        self.answerer = Answerer(
            self.holder,
            challenger=self.challenger,
            router=self.router,
            metrics=self.metrics,
            prediction_log=self.prediction_log,
            max_records=settings.max_records,
            ids=self.ids,
            max_explain_rows=explaining.max_rows,
            explain_top_k=explaining.top_k,
        )
        self.collector = Collector(self.telemetry_log, model)

    def start(self) -> OnlineApp:
        """Write what a killed predecessor acknowledged, start the flusher, load the versions and follow them."""
        self.flusher.flush()
        self.flusher.start()
        poll = self.settings.poll_interval_s
        for holder in (self.challenger, self.holder):
            if holder is not None:
                holder.refresh()
                holder.start(poll)
        return self

    def stop(self, timeout_s: float = 1.0) -> None:
        """Stop following channels and write every buffered log row."""
        self.holder.stop(timeout_s=timeout_s)
        if self.challenger is not None:
            self.challenger.stop(timeout_s=timeout_s)
        self.flusher.stop(timeout_s=timeout_s)

    @property
    def ready(self) -> bool:
        """A model is warm and the thread that writes the logs runs (else rows would pile up unseen)."""
        return self.holder.ready and self.flusher.alive

    def loaded(self) -> LoadedModel:
        """The version answering now; NotReadyError before warm-up."""
        return self.answerer.loaded()

    def feedback(self, items: Sequence[FeedbackItem]) -> FeedbackAck:
        """Store labels (durably) for ids this service issued; RequestRejected names the item at fault."""
        try:
            pairs = check_feedback(self.loaded(), items, self.ids)
        except RequestRejected as exc:
            self.metrics.refused_feedback(exc.rule)
            raise
        return FeedbackAck(stored=self.feedback_log.record(pairs))

    def telemetry(self, heartbeat: Any) -> TelemetryAck:
        return self.collector.accept(heartbeat)

    def info(self) -> ModelInfo:
        return model_info(self.loaded(), self.holder.channel)

    def render_metrics(self) -> str:
        """``/metrics``: requests, scores, shadow agreement and feedback (OnlineMetrics), the logs (Flusher) and how
        often each channel pointer was read."""
        lines = [
            "# HELP ferry_online_channel_reads_total Times the service read a channel pointer for a new version.",
            "# TYPE ferry_online_channel_reads_total counter",
        ]
        for holder in (self.holder, self.challenger):
            if holder is not None:
                lines.append(f'ferry_online_channel_reads_total{{channel="{holder.channel}"}} {holder.reads}')
        return self.metrics.render() + self.tarpit.render() + self.flusher.render() + "\n".join(lines) + "\n"


def _wal_root(settings: OnlineSettings, registry_url: str, model: str) -> Path:
    """Where the durable logs of ``model`` keep their write-ahead files (see :attr:`OnlineSettings.wal_dir`): beside
    the logs for a local registry, else in the user's state directory (a write-ahead file must be on local disk)."""
    if settings.wal_dir is not None:
        return settings.wal_dir / model
    fs, root = Registry(registry_url).open_store()
    if storage.is_local(fs):
        return Path(layout.online_dir(root, model, "wal"))
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "ferry" / "wal" / model
