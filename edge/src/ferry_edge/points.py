"""Named points of an install where a test can stop the agent, to kill it there (a power loss, the OOM killer).

Setting ``FERRY_EDGE_PAUSE_AT`` to one of :data:`INSTALL_STEPS` makes the process that reaches that point print
``paused at <step> (pid <pid>)`` on standard error and sleep. ``self-testing`` is reached by the self-test child.
"""

from __future__ import annotations

import os
import sys
import time

INSTALL_STEPS = (
    "downloaded",  # the bundle is verified and on disk
    "unpacked",  # versions/incoming-<sha> holds its two files
    "self-testing",  # the self-test child is running (reached in the child)
    "self-tested",  # versions/<version>-<sha> is complete, nothing switched yet
    "previous-linked",  # `previous` points at the old model, `current` still too
    "switched",  # `current` points at the new model
    "recorded",  # state.json says so; the old versions are not pruned yet
)


def pause_point(step: str) -> None:
    if os.environ.get("FERRY_EDGE_PAUSE_AT") == step:
        print(f"paused at {step} (pid {os.getpid()})", file=sys.stderr, flush=True)
        time.sleep(3600)
