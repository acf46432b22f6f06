"""Key rotation (``ferry keys rotate``): every encrypted object re-encrypted under a new key, resumably.

A rotation runs in three steps, each safe to interrupt:

1. **begin** — when the key file holds one key, a new key is written *first* in it, the old one kept after it (one
   atomic write). From then on every process that writes seals with the new key, and both keys read.
2. **re-encrypt** — every file under the given roots (the registry, the run directories) that is sealed under
   another key than the first is decrypted and sealed again under it, one atomic replace per file. A write-ahead
   file is re-encrypted line by line once no live service holds it (it is skipped, and the rotation left unfinished,
   while one does).
3. **finish** — when nothing is left under an old key, the key file keeps only the new key.

Killed anywhere, the next run resumes: a key file with more than one key is a rotation under way, so it is not
begun again, and files already under the new key are skipped. Until step 3, every object stays readable.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ferry.storage import files, sealed

__all__ = ["Rotation", "rotate"]

_PEEK = 64


@dataclass
class Rotation:
    """What one run of a rotation did: the key now encrypting, the keys retired, files re-encrypted, files still
    under an old key (held by a live service), and whether the rotation finished."""

    key_file: str
    key_id: str
    began: bool = False
    retired: list[str] = field(default_factory=list)
    rewritten: int = 0
    skipped: int = 0
    pending: list[str] = field(default_factory=list)
    finished: bool = False


def _write_ring(path: str, ring: sealed.KeyRing) -> None:
    files.atomic_write_bytes(files.local_fs(), path, ring.dump(), mode=0o600)


def _files_under(fs: Any, root: str) -> Iterable[str]:
    if not files.exists(fs, root):
        return []
    return sorted(str(p) for p in fs.find(root) if not str(p).rpartition("/")[2].startswith((".", "_")))


def _peek(fs: Any, path: str) -> bytes:
    """The first bytes of ``path`` (one ranged read on an object store), enough to tell its key id."""
    return bytes(fs.cat_file(path, start=0, end=_PEEK))


def _reseal_lines(path: str, ring: sealed.KeyRing) -> bool:
    """Re-encrypt a local write-ahead file line by line; False when a live service holds it (left for later)."""
    with open(path, "ab") as held:
        try:
            fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        with open(path, "rb") as fh:
            lines = fh.read().splitlines(keepends=True)
        out = []
        for number, line in enumerate(lines, 1):
            body = line.rstrip(b"\n")
            if body.startswith(sealed.LINE_PREFIX) and line.endswith(b"\n"):
                plain = sealed.unseal_line(body, name=f"{path} line {number}", ring=ring)
                body = sealed.seal_line(plain, ring=ring)
            out.append(body + (b"\n" if line.endswith(b"\n") else b""))
        files.atomic_write_bytes(files.local_fs(), path, b"".join(out))
    return True


def _line_keys(path: str) -> set[str]:
    ids = set()
    with open(path, "rb") as fh:
        for line in fh:
            if line.startswith(sealed.LINE_PREFIX) and line.endswith(b"\n"):
                with contextlib.suppress(ValueError):
                    found = sealed.key_id_of(sealed.line_envelope(line))
                    if found:
                        ids.add(found)
    return ids


def rotate(
    key_file: str,
    roots: Iterable[tuple[Any, str]],
    *,
    on_file: Callable[[str], None] | None = None,
) -> Rotation:
    """Run (or resume) a rotation of the key ring in ``key_file`` over every file under ``roots`` (pairs of
    ``(filesystem, root)`` from :func:`ferry.storage.open_fs`); ``on_file`` is told each file re-encrypted."""
    ring = sealed.load_ring(key_file)
    began = False
    if len(ring.keys) == 1:
        ring = sealed.KeyRing((bytes.fromhex(sealed.new_key_hex()), *ring.keys), key_file)
        _write_ring(key_file, ring)
        began = True
    current = ring.current_id
    out = Rotation(key_file=key_file, key_id=current, began=began)
    for fs, root in roots:
        for path in _files_under(fs, root):
            head = _peek(fs, path)
            if head.startswith(sealed.LINE_PREFIX):
                if not files.is_local(fs) or _line_keys(path) <= {current}:
                    continue
                if _reseal_lines(path, ring):
                    out.rewritten += 1
                    if on_file is not None:
                        on_file(path)
                else:
                    out.pending.append(path)
                continue
            if sealed.key_id_of(head) in (None, current):
                out.skipped += 1
                continue
            data = files.read_raw(fs, path)
            plain = sealed.unseal(data, name=path, ring=ring)
            files.atomic_write_bytes(fs, path, sealed.seal(plain, ring=ring))
            out.rewritten += 1
            if on_file is not None:
                on_file(path)
    if not out.pending:
        out.retired = [k for k in ring.ids() if k != current]
        _write_ring(key_file, sealed.KeyRing((ring.current,), key_file))
        out.finished = True
    return out
