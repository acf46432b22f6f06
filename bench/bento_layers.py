"""The ferry online service without BentoML's OpenTelemetry and timeout middlewares, for measuring only.

``bench/online.py --bentoml-layers`` serves this beside the real service (``bentoml serve bento_layers:Online`` in
``bench/``) to measure what those two layers cost per request: BentoML installs both on every service (the timeout
must be positive, the OpenTelemetry middleware has no switch), and they sit outside ``add_asgi_middleware``'s reach,
so only a patched app factory leaves them out. Never serve this: it is the service with BentoML's request timeout
removed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import _bentoml_impl.server.app as bentoml_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bentos" / "online"))

LEFT_OUT = ("OpenTelemetryMiddleware", "TimeoutMiddleware")
_middlewares = bentoml_app.ServiceAppFactory.middlewares


def _fewer(self: Any) -> list[Any]:
    return [m for m in _middlewares.fget(self) if getattr(m.cls, "__name__", "") not in LEFT_OUT]


bentoml_app.ServiceAppFactory.middlewares = property(_fewer)

from service import Online  # noqa: E402

__all__ = ["Online"]
