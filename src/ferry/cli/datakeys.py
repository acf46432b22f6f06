"""``ferry keys data-key`` / ``rotate`` / ``decrypt``: the key that encrypts data at rest (:mod:`ferry.storage.sealed`).

``data-key FILE`` makes a key file; ``rotate`` re-encrypts every encrypted object under the registry and the run
directories with a new key, resumably (:mod:`ferry.storage.rotation`); ``decrypt`` writes one encrypted object (an
Evidently report, a log file) out in clear, for reading.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ferry.cli.app import keys_app
from ferry.cli.common import console, fail
from ferry.errors import ConfigError, FerryError

KeyFileOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--key-file", help="The data key file. [FERRY_ENCRYPTION_KEY_FILE]"),
]


def _data_key_file(given: Path | None) -> str:
    from ferry.storage import sealed

    path = str(given) if given else sealed.settings().key_file
    if not path:
        raise ConfigError(
            "no data key file: pass --key-file or set FERRY_ENCRYPTION_KEY_FILE (make one with `ferry keys data-key`)"
        )
    return path


@keys_app.command("data-key")
def keys_data_key(
    file: Annotated[
        Path, typer.Argument(help="Where to write the new key file (mode 0600); never inside the registry.")
    ],
) -> None:
    """Make a key file for encryption at rest (one random 32-byte key); point FERRY_ENCRYPTION_KEY_FILE at it."""
    from ferry import storage
    from ferry.storage import sealed

    try:
        if file.exists():
            raise ConfigError(f"{file} exists; a key file is never overwritten (losing a key loses the data)")
        ring = sealed.KeyRing((bytes.fromhex(sealed.new_key_hex()),), str(file))
        storage.atomic_write_bytes(storage.local_fs(), str(file.resolve()), ring.dump(), mode=0o600)
    except (FerryError, OSError) as exc:
        raise fail(exc) from exc
    console().print(f"wrote data key {ring.current_id} to {file}; set FERRY_ENCRYPTION_KEY_FILE={file}")


@keys_app.command("rotate")
def keys_rotate(
    key_file: KeyFileOpt = None,
    registry: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Registry URL. [FERRY_REGISTRY_URL]"),
    ] = None,
    work_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="The retrain run directories. [FERRY_WORK_DIR]"),
    ] = None,
    also: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--also", help="Another directory or URL to re-encrypt (e.g. a batch output's drift report)."),
    ] = None,
) -> None:
    """Re-encrypt every encrypted object under a new data key, then retire the old key.

    The new key goes first in the key file and the old one stays after it until every object under the registry
    and the run directories is re-encrypted, so everything stays readable meanwhile. Interrupted, run it again: it
    resumes and finishes. Every process that writes must read the same key file.
    """
    from ferry import storage
    from ferry.settings import StorageSettings
    from ferry.storage.rotation import rotate

    out = console()
    try:
        path = _data_key_file(key_file)
        settings = StorageSettings()
        roots = [storage.open_fs(registry or settings.registry_url, settings.storage_options)]
        roots.append(storage.open_fs(str(work_dir or settings.work_dir)))
        roots += [storage.open_fs(url, settings.storage_options) for url in also or []]
        done = rotate(path, roots, on_file=lambda p: print(f"re-encrypted {p}", flush=True))
    except (FerryError, OSError) as exc:
        raise fail(exc) from exc
    if done.began:
        out.print(f"began a rotation to key {done.key_id}")
    out.print(f"{done.rewritten} object(s) re-encrypted, {done.skipped} already under key {done.key_id}")
    if not done.finished:
        out.print(
            f"[yellow]{len(done.pending)} write-ahead file(s) are held by a running service; run `ferry keys rotate` "
            f"again once it has flushed them (both keys stay in {path} until then)[/]"
        )
        raise typer.Exit(code=1)
    retired = f"; retired key(s) {', '.join(done.retired)}" if done.retired else ""
    out.print(f"rotation finished: {path} holds only key {done.key_id}{retired}")


@keys_app.command("decrypt")
def keys_decrypt(
    url: Annotated[str, typer.Argument(help="An encrypted object: a path or fsspec URL.")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Where to write it in clear.")],
) -> None:
    """Write one encrypted object (an Evidently report, a log file, a sample) in clear, to read it."""
    from ferry import storage

    try:
        _data_key_file(None)
        fs, path = storage.open_fs(url)
        data = storage.read_bytes(fs, path)
        storage.atomic_write_bytes(storage.local_fs(), str(out_file.resolve()), data, mode=0o600)
    except FileNotFoundError:
        raise fail(FileNotFoundError(f"{url}: no such object")) from None
    except (FerryError, OSError) as exc:
        raise fail(exc) from exc
    console().print(f"wrote {len(data)} bytes in clear to {out_file}")
