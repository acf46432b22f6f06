"""Online inference: the logic behind the BentoML service in ``bentos/online/``, kept free of BentoML.

| module | what |
|---|---|
| :mod:`ferry.online.app` | :class:`OnlineApp`: the composition root, every part of one service process, BentoML-free |
| :mod:`ferry.online.settings` | :class:`OnlineSettings` (``FERRY_ONLINE_`` environment): model, channel, limits, keys |
| :mod:`ferry.online.records` | JSON records -> checked ONNX inputs, or :class:`RequestRejected` naming the field |
| :mod:`ferry.online.holder` | :class:`ModelHolder`: follows a channel pointer, warms a new session, swaps atomically |
| :mod:`ferry.online.predict` | one request's answer: predictions, probabilities, version, prediction ids |
| :mod:`ferry.online.explain` | one explain request's answer: the predictions and each record's explanation |
| :mod:`ferry.online.answer` | :class:`Answerer`: one predict or explain request end to end (route, check, score, log) |
| :mod:`ferry.online.front` | the front door: the one ASGI middleware, every admission step in order, then the lane |
| :mod:`ferry.online.lane` | the fast lane: ``POST /predict``, ``/explain``, ``/telemetry`` and ``GET /metrics`` |
| :mod:`ferry.online.telemetry` | edge heartbeats: the validated payload and its Parquet log in the registry |
| :mod:`ferry.online.auth` | API keys with scopes (stored as sha256 hashes) and the :class:`Guard` that checks them |
| :mod:`ferry.online.limits` | a body read whole within a size (413) and a time (408), one deadline watcher per loop |
| :mod:`ferry.online.tarpit` | 401s to clients that keep failing authentication are held, so a flood waits |
| :mod:`ferry.online.shed` | admission: a share per API key (429), and 503 + Retry-After over ``max_in_flight`` |
| :mod:`ferry.online.routing` | champion, shadow, canary or sticky A/B between champion and challenger |
| :mod:`ferry.online.logs` | prediction, feedback and telemetry logs, buffered into Parquet files in the registry |
| :mod:`ferry.online.wal` | the local write-ahead file that makes acknowledged feedback and heartbeats durable |
| :mod:`ferry.online.metrics` | ``/metrics``: HTTP requests by endpoint (bounded labels), versions, scores, shadow |
| :mod:`ferry.online.ids` | prediction ids signed by the service, verified without a lookup |
| :mod:`ferry.online.keyfile` | the API key file as ``ferry keys`` edits it: create, list, revoke, under a lock |
| :mod:`ferry.online.watch` | which ``ferry.security.*`` events the service's refusal counters ask for |
| :mod:`ferry.online.tls` | the certificate, key and client CA ``ferry serve`` hands to BentoML, checked beforehand |

Importing this package starts nothing: no thread, no I/O, no BentoML.
"""

from __future__ import annotations
