"""Unpacking a bundle that TUF has already verified, refusing anything but the expected regular files:
``bundle.json`` and ``model.onnx`` always, ``explain.npz`` when the manifest lists its sha256 (``explain_sha256``).
Each file the manifest hashes must match it, so a member cannot be swapped even inside a signed bundle."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

from ferry_edge.errors import BundleRejected

VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
"""A version names a directory on the device, so it is a plain name: never a path."""
MEMBERS = frozenset({"bundle.json", "model.onnx"})
"""The members every bundle holds."""
HASHED = {"model.onnx": "model_sha256", "explain.npz": "explain_sha256"}
"""Each member the manifest hashes, and its field; ``explain.npz`` is there exactly when its field is."""
MAX_MEMBER_BYTES = 512 * 1024 * 1024
REQUIRED = {
    "format": int,
    "model": str,
    "version": str,
    "model_sha256": str,
    "schema": dict,
    "outputs": list,
    "golden": dict,
}


def target_name(model: str, channel: str) -> str:
    """The TUF target that follows ``channel`` of ``model`` (the publisher uses the same rule)."""
    return f"{model}/{channel.replace('/', '-')}/bundle.tar"


def parse_manifest(raw: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise BundleRejected(f"bundle.json is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise BundleRejected("bundle.json is not a JSON object")
    for key, kind in REQUIRED.items():
        if not isinstance(manifest.get(key), kind):
            raise BundleRejected(f"bundle.json field {key!r} is missing or not a {kind.__name__}")
    if not VERSION.fullmatch(manifest["version"]):
        raise BundleRejected(
            f"bundle.json field 'version' {manifest['version'][:80]!r} is not a version name "
            "(letters, digits, '.', '_', '+', '-'; at most 128 characters)"
        )
    if manifest["format"] != 1:
        raise BundleRejected(f"bundle format {manifest['format']} is not supported by this agent (1)")
    return manifest


def unpack(data: bytes, dest: Path) -> dict[str, Any]:
    """Write the bundle's files into the new directory ``dest`` and return its manifest.

    Refuses links, directories, devices, path traversal, unexpected, duplicate, unlisted and oversized members, and
    a model.onnx or explain.npz whose sha256 differs from the manifest's. ``dest`` appears complete (renamed from a
    temp dir) or not at all.
    """
    if dest.exists():
        raise BundleRejected(f"{dest} already exists")
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar.getmembers():
                if member.name not in MEMBERS | HASHED.keys() or not member.isreg():
                    raise BundleRejected(f"bundle member {member.name!r} ({member.type!r}) is not allowed")
                if member.name in files:
                    raise BundleRejected(f"bundle member {member.name!r} appears twice")
                if member.size > MAX_MEMBER_BYTES:
                    raise BundleRejected(f"bundle member {member.name!r} is {member.size} bytes, over the cap")
                handle = tar.extractfile(member)
                if handle is None:
                    raise BundleRejected(f"bundle member {member.name!r} cannot be read")
                files[member.name] = handle.read()
    except (tarfile.TarError, EOFError) as exc:
        raise BundleRejected(f"the bundle is not a readable tar file: {exc}") from exc
    if MEMBERS - set(files):
        raise BundleRejected(f"the bundle lacks {sorted(MEMBERS - set(files))}")
    manifest = parse_manifest(files["bundle.json"])
    for name, key in HASHED.items():
        listed = manifest.get(key)
        if listed is not None and not isinstance(listed, str):
            raise BundleRejected(f"bundle.json field {key!r} is not a string")
        if (name in files) != (listed is not None):
            raise BundleRejected(
                f"bundle member {name!r} is not listed in bundle.json ({key})"
                if name in files
                else f"the bundle lacks {name!r}, which bundle.json lists ({key})"
            )
        if name in files and hashlib.sha256(files[name]).hexdigest() != listed:
            raise BundleRejected(f"{name} does not match the sha256 in bundle.json")
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, blob in files.items():
        with open(tmp / name, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
    os.rename(tmp, dest)
    return manifest
