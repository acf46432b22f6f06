"""Headless Chromium for checking what a page shows: the browser comes from ``scripts/browser.sh`` (installed once
when missing), runs the page's JavaScript and dumps the DOM. No browser download, no new dependency."""

from __future__ import annotations

import html
import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def chromium() -> str:
    """The browser's path (``FERRY_CHROMIUM`` when set by ``./scripts/check``, else ``scripts/browser.sh``'s)."""
    given = os.environ.get("FERRY_CHROMIUM")
    if given and Path(given).is_file():
        return given
    done = subprocess.run([str(REPO / "scripts" / "browser.sh")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def dump_dom(url: str, profile: Path, *, budget_ms: int = 15_000) -> str:
    """The DOM of ``url`` after its scripts ran (up to ``budget_ms`` of virtual time), as HTML."""
    args = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
        f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", "--dump-dom", url,
    ]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def table_cells(dom: str, cell_class: str) -> list[tuple[str, str]]:
    """``(html, text)`` of every table cell holding an element of class ``cell_class`` (text: tags dropped,
    entities decoded)."""
    cells = [c for c in re.findall(r"<td[^>]*>(.*?)</td>", dom, re.S) if cell_class in c]
    return [(c, html.unescape(re.sub(r"<[^>]+>", "", c)).strip()) for c in cells]
