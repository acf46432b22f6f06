"""Build a bento pinned to the version a channel points to now (offline; packages are not locked).

    cd bentos/online && FERRY_REGISTRY_URL=... uv run python build.py [--channel online/champion] [bentoml build args]

Reads the channel from the registry, then runs ``bentoml build --arg model=<model> --arg version=<id>``: the bento
records both as bento arguments, and ``service.py`` serves exactly that version wherever the bento runs, whatever
the channel says later (``FERRY_ONLINE_VERSION`` still overrides it). The bento is labelled ``ferry-version=<id>``.
Prints the bento's tag. Plain ``bentoml build`` makes an unpinned bento that follows the channel.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from ferry.online.holder import ModelHolder
from ferry.online.settings import OnlineSettings
from ferry.registry import Registry

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--channel", default=None, help="channel to pin (default: FERRY_ONLINE_CHANNEL)")
    args, rest = parser.parse_known_args(argv)
    settings = OnlineSettings()
    registry = Registry.from_settings()
    model = ModelHolder.resolve_model(registry, settings.model)
    channel = args.channel or settings.channel
    version = registry.channel(model, channel)
    if version is None:
        print(f"channel {channel} of {model} points to no version yet; promote one first", file=sys.stderr)
        return 2
    bentoml = Path(sys.executable).parent / "bentoml"
    cmd = [str(bentoml), "build", "--arg", f"model={model}", "--arg", f"version={version}"]
    cmd += ["--label", f"ferry-model={model}", "--label", f"ferry-version={version}", *rest]
    return subprocess.run(cmd, cwd=HERE, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
