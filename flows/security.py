"""Intrusion signals: the ``security-watch`` flow reads the online service's refusal counters and emits
``ferry.security.refusals`` / ``ferry.security.suspects`` events (decided by :mod:`ferry.online.watch`); the
``security-alert`` flow is what the automation in ``prefect.yaml`` runs on those events: it notifies.
"""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import asdict
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from ferry.online import watch
from ferry.settings import StorageSettings

WEBHOOK_ENV = "FERRY_SECURITY_WEBHOOK_URL"


@task(name="read-security-counters", retries=2, retry_delay_seconds=5)
def read_counters(registry_url: str, model: str, metrics_url: str) -> list[dict[str, Any]]:
    return [asdict(a) for a in watch.check(registry_url, model, metrics_url)]


@flow(name="security-watch")
def security_watch(
    metrics_url: str = "http://127.0.0.1:3000/metrics", model: str = "churn", registry_url: str | None = None
) -> list[dict[str, Any]]:
    """Compare the service's refusal counters with the last reading and announce what crossed a threshold
    (FERRY_SECURITY_REFUSALS, FERRY_SECURITY_SUSPECTS) as ``ferry.security.*`` events."""
    log = get_run_logger()
    found = read_counters(registry_url or StorageSettings().registry_url, model, metrics_url)
    for alert in found:
        log.warning("%s: %s", alert["event"], alert["summary"])
        emit_event(
            event=alert["event"],
            resource={
                "prefect.resource.id": f"ferry.service.{model}",
                "prefect.resource.name": f"{model} online service",
                "ferry.model": model,
            },
            payload={**alert["payload"], "summary": alert["summary"]},
        )
    if not found:
        log.info("no refusals or suspects over their thresholds since the last reading")
    return found


@flow(name="security-alert")
def security_alert(event: str, summary: str, details: str = "{}", webhook_url: str | None = None) -> None:
    """Notify about a ``ferry.security.*`` event: a warning in the run's log, a markdown artifact, and a JSON POST to
    ``webhook_url`` (or FERRY_SECURITY_WEBHOOK_URL) when one is set, e.g. a chat or paging webhook."""
    log = get_run_logger()
    log.warning("%s: %s", event, summary)
    create_markdown_artifact(
        f"## {event}\n\n{summary}\n\n```json\n{details}\n```\n", key="ferry-security-alert", description=summary
    )
    url = webhook_url or os.environ.get(WEBHOOK_ENV)
    if url:
        body = json.dumps({"text": f"{event}: {summary}", "event": event, "details": details}).encode()
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            log.info("notified %s (%s)", url, response.status)
