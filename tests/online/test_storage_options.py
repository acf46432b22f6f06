"""The online service's modules reach the registry the way every other part of ferry does: with
``FERRY_STORAGE_OPTIONS``, not only through the AWS variables. Checked on the test S3 server (moto's, a process)
with the endpoint and credentials given only as storage options."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from s3_support import CREDENTIALS, make_bucket

from ferry import storage
from ferry.online.app import _wal_root
from ferry.online.ids import PredictionIds
from ferry.online.logs import FeedbackLog
from ferry.online.settings import OnlineSettings
from ferry.registry import Registry, layout

pytestmark = pytest.mark.integration


def test_ids_and_logs_use_the_storage_options(s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = f"ferry-{uuid.uuid4().hex[:12]}"
    make_bucket(s3_server.url, bucket)
    for name in (*CREDENTIALS, "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    options = {
        "endpoint_url": s3_server.url,
        "key": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "secret": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "client_kwargs": {"region_name": CREDENTIALS["AWS_DEFAULT_REGION"]},
    }
    monkeypatch.setenv("FERRY_STORAGE_OPTIONS", json.dumps(options))
    url = f"s3://{bucket}/registry"

    ids = PredictionIds.for_model(url, "churn")  # its key is made once and kept in the registry
    assert PredictionIds.for_model(url, "churn").valid(ids.new())

    log = FeedbackLog(url, "churn", buffer_rows=10)
    log.append([{"prediction_id": "p1", "label": "1"}])
    written = log.flush()
    assert written is not None, log.last_error
    assert log.write_failures == 0

    fs, root = Registry(url).open_store()
    assert storage.exists(fs, written)
    assert storage.exists(fs, layout.online_file(root, "churn", "prediction-ids.key"))
    wal = _wal_root(OnlineSettings(), url, "churn")  # an object store: write-ahead files on local disk
    assert not str(wal).startswith(("s3:", bucket))
