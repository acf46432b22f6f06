"""A host that streams forever (endless-data attack): the download is cut at the signed length and nothing installs."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from edge_support import NAME, Setup, retar, with_version
from ferry_edge.errors import SyncError

from ferry.cli.processes import free_port

ENDLESS = """
import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
endless_prefix = sys.argv[3]
class H(SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith(endless_prefix):
            self.send_response(200)
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"\\0" * 65536)
            except OSError:
                return
        return super().do_GET()
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), partial(H, directory=sys.argv[2])).serve_forever()
"""


@pytest.mark.parametrize(
    "prefix", ["/targets/", "/metadata/timestamp.json"], ids=["endless-target", "endless-timestamp"]
)
def test_a_host_that_streams_forever_installs_nothing(
    prefix: str, tmp_path: Path, churn_champion: dict[str, str], serve_dir: Callable[[Path], str]
) -> None:
    setup = Setup(tmp_path, churn_champion, serve_dir)
    setup.agent.sync()
    setup.repo.publish(
        NAME, retar(setup.bundle.data, lambda m: m.update({"bundle.json": with_version(m["bundle.json"], "v-next")}))
    )
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", ENDLESS, str(port), str(setup.repo_dir), prefix])
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metadata/1.root.json", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        import json

        config = json.loads((setup.agent.home / "config.json").read_text())
        config["repo_url"] = f"http://127.0.0.1:{port}"
        (setup.agent.home / "config.json").write_text(json.dumps(config))
        start = time.monotonic()
        with pytest.raises(SyncError):
            setup.agent.sync()
        assert time.monotonic() - start < 30  # cut at the signed length, not after the host gives up
        assert setup.agent.active().version == setup.version.id
    finally:
        proc.terminate()
        proc.wait(timeout=10)
