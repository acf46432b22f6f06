"""The audit log of channel moves: an append-only, hash-chained JSON-lines file per model.

Every promotion or rollback appends one record saying who moved which channel, when, why, from which version to
which, and which gate report allowed it. A release (:mod:`ferry.registry.release`) appends ONE record for all the
channels it moves (action ``release``, and ``release-rollback`` for its undoing): its ``moves`` list each channel
with its from and to versions, its ``channel`` names them comma-separated, and ``to_version`` is the released
version (for a ``release-rollback``, the version the channels went back to, or ``""`` when they went to different
ones). Records of the other actions have no ``moves`` field, so their hashes are as before. An erasure
(``ferry forget``) appends one that moves nothing: its reason names the subject by a keyed hash and the rows removed
per place. Each record carries ``prev_hash`` (the previous
record's hash, ``"0" * 64`` for the first) and ``hash``, the sha256 of its own canonical JSON without ``hash``.
Editing, removing or reordering a record therefore breaks the chain at that line.

A chain alone cannot reveal that its tail was cut off, nor that a pointer was moved without a record. So
``channels.json`` stores, per channel, the hash of the record that last moved it (``audit_head``), and
:func:`verify_log` checks the log and the pointers against each other: every head must be in the log, and replaying
the log must give exactly the pointers and histories in ``channels.json``.

This module is pure: it turns text into records and reports. The registry does the reading, writing and locking.

One concept kept whole (about 500 lines): the record format, parsing, replay and the check against
``channels.json`` apply the same field rules, and read best side by side.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from ferry.errors import AuditError

__all__ = [
    "ZERO_HASH",
    "AuditRecord",
    "AuditReport",
    "ChannelState",
    "GateRef",
    "Move",
    "apply_record",
    "canonical_json",
    "check_log",
    "dump_channels",
    "make_record",
    "parse_channels",
    "parse_log",
    "replay",
    "verify_log",
]

ZERO_HASH = "0" * 64
Action = Literal["promote", "rollback", "erase", "release", "release-rollback"]
_ACTIONS = ("promote", "rollback", "erase", "release", "release-rollback")
RELEASE_ACTIONS = ("release", "release-rollback")


def canonical_json(obj: Any) -> bytes:
    """The bytes that get hashed: sorted keys, no whitespace, ASCII only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _hash_body(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json({k: v for k, v in body.items() if k != "hash"})).hexdigest()


@dataclass(frozen=True)
class GateRef:
    """Which gate report allowed a move: its verdict, its path relative to the registry root, and its sha256."""

    passed: bool | None = None
    report: str | None = None
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "report": self.report, "sha256": self.sha256}


@dataclass(frozen=True)
class Move:
    """One channel's part of a record: where it pointed before and where after."""

    channel: str
    from_version: str | None
    to_version: str

    def to_dict(self) -> dict[str, Any]:
        return {"channel": self.channel, "from_version": self.from_version, "to_version": self.to_version}


@dataclass(frozen=True)
class AuditRecord:
    """One move: of one channel, or of every channel of a release (``moves``). ``seq`` is 1-based and equals the
    record's line number in ``audit.jsonl``."""

    seq: int
    ts: str
    actor: str
    action: Action
    model: str
    channel: str
    from_version: str | None
    to_version: str
    reason: str
    forced: bool
    gate: GateRef
    prev_hash: str
    hash: str
    moves: tuple[Move, ...] = ()

    @property
    def changes(self) -> tuple[Move, ...]:
        """Every channel this record moved, with its versions: one for a promotion or rollback, each channel of a
        release, none for an erasure."""
        if self.action in RELEASE_ACTIONS:
            return self.moves
        if self.action == "erase":
            return ()
        return (Move(self.channel, self.from_version, self.to_version),)

    @property
    def channels(self) -> list[str]:
        """The names of the channels this record moved."""
        return [m.channel for m in self.changes]

    def to_dict(self) -> dict[str, Any]:
        body = {
            "seq": self.seq,
            "ts": self.ts,
            "actor": self.actor,
            "action": self.action,
            "model": self.model,
            "channel": self.channel,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "reason": self.reason,
            "forced": self.forced,
            "gate": self.gate.to_dict(),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }
        if self.action in RELEASE_ACTIONS:
            body["moves"] = [m.to_dict() for m in self.moves]
        return body

    def to_line(self) -> str:
        """The record as one line of ``audit.jsonl`` (canonical JSON plus a newline)."""
        return canonical_json(self.to_dict()).decode() + "\n"


@dataclass(frozen=True)
class ChannelState:
    """Where a channel points now, the versions it pointed to before (oldest first), and the record that moved it."""

    version: str
    history: tuple[str, ...]
    moved_at: str
    audit_head: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "history": list(self.history),
            "moved_at": self.moved_at,
            "audit_head": self.audit_head,
        }


@dataclass(frozen=True)
class AuditReport:
    """The result of checking a model's audit log against its channel pointers.

    ``first_bad`` is the 1-based line number of the first bad record, or None when every line is fine but the
    pointers in ``channels.json`` disagree with the log (then ``channel`` names the channel). ``repairable`` is True
    when the only problem is that ``channels.json`` lags the log's last record, which is what a promotion that
    stopped between its two writes leaves behind; the next promotion or rollback completes it.
    """

    ok: bool
    n_records: int
    first_bad: int | None = None
    problem: str = ""
    channel: str | None = None
    repairable: bool = False
    signed: bool = False  # the signed head (audit.head.json) was checked and verifies


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "seq": (int,),
    "ts": (str,),
    "actor": (str,),
    "action": (str,),
    "model": (str,),
    "channel": (str,),
    "from_version": (str, type(None)),
    "to_version": (str,),
    "reason": (str,),
    "forced": (bool,),
    "gate": (dict,),
    "prev_hash": (str,),
    "hash": (str,),
}


def _field_problem(obj: Mapping[str, Any]) -> str | None:
    """What is wrong with the shape of one parsed record, or None."""
    missing = [name for name in _FIELD_TYPES if name not in obj]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    for name, types in _FIELD_TYPES.items():
        value = obj[name]
        if not isinstance(value, types) or (name == "seq" and isinstance(value, bool)):
            return f"field {name!r} has the wrong type ({type(value).__name__})"
    if obj["action"] not in _ACTIONS:
        return f"field 'action' is {obj['action']!r}; expected one of {', '.join(_ACTIONS)}"
    gate = obj["gate"]
    if set(gate) != {"passed", "report", "sha256"}:
        return "field 'gate' must have exactly the keys passed, report, sha256"
    if not isinstance(gate["passed"], bool | None):
        return "field 'gate.passed' must be true, false or null"
    if not all(isinstance(gate[k], str | None) for k in ("report", "sha256")):
        return "fields 'gate.report' and 'gate.sha256' must be strings or null"
    if obj["action"] not in RELEASE_ACTIONS:
        return "field 'moves' belongs to release records only" if "moves" in obj else None
    return _moves_problem(obj)


def _moves_problem(obj: Mapping[str, Any]) -> str | None:
    """What is wrong with a release record's ``moves``: a non-empty list of channel moves, each channel once, named
    in ``channel`` in the same order."""
    moves = obj.get("moves")
    if not isinstance(moves, list) or not moves:
        return f"field 'moves' of a {obj['action']} record must be a non-empty list"
    for i, m in enumerate(moves):
        ok = (
            isinstance(m, dict)
            and set(m) == {"channel", "from_version", "to_version"}
            and isinstance(m["channel"], str)
            and isinstance(m["from_version"], str | None)
            and isinstance(m["to_version"], str)
        )
        if not ok:
            return f"field 'moves[{i}]' must have exactly a string channel and to_version, and from_version"
    names = [m["channel"] for m in moves]
    if len(set(names)) != len(names) or obj["channel"] != ",".join(names):
        return "field 'channel' must name each channel of 'moves' once, comma-separated, in their order"
    return None


def _record_from(obj: Mapping[str, Any]) -> AuditRecord:
    gate = obj["gate"]
    return AuditRecord(
        seq=obj["seq"],
        ts=obj["ts"],
        actor=obj["actor"],
        action=obj["action"],
        model=obj["model"],
        channel=obj["channel"],
        from_version=obj["from_version"],
        to_version=obj["to_version"],
        reason=obj["reason"],
        forced=obj["forced"],
        gate=GateRef(passed=gate["passed"], report=gate["report"], sha256=gate["sha256"]),
        prev_hash=obj["prev_hash"],
        hash=obj["hash"],
        moves=tuple(Move(m["channel"], m["from_version"], m["to_version"]) for m in obj.get("moves", ())),
    )


def make_record(
    prev: AuditRecord | None,
    *,
    ts: str,
    actor: str,
    action: Action,
    model: str,
    channel: str,
    from_version: str | None,
    to_version: str,
    reason: str,
    forced: bool,
    gate: GateRef,
    moves: tuple[Move, ...] = (),
) -> AuditRecord:
    """The record that follows ``prev`` (None for the first), with its ``seq``, ``prev_hash`` and ``hash`` set.
    ``moves`` are a release record's channel moves (and only a release record has them)."""
    unsigned = AuditRecord(
        seq=prev.seq + 1 if prev else 1,
        ts=ts,
        actor=actor,
        action=action,
        model=model,
        channel=channel,
        from_version=from_version,
        to_version=to_version,
        reason=reason,
        forced=forced,
        gate=gate,
        prev_hash=prev.hash if prev else ZERO_HASH,
        hash="",
        moves=moves,
    )
    return replace(unsigned, hash=_hash_body(unsigned.to_dict()))


def parse_log(text: str, *, source: str = "audit.jsonl") -> list[AuditRecord]:
    """Parse the records of a log without checking the chain.

    Raises :class:`~ferry.errors.AuditError` naming the line when a line is not a well-formed record.
    """
    records: list[AuditRecord] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise AuditError(f"{source} line {lineno} is not valid JSON ({exc}); run verify_audit for details") from exc
        problem = _field_problem(obj) if isinstance(obj, dict) else "not a JSON object"
        if problem:
            raise AuditError(f"{source} line {lineno}: {problem}; run verify_audit for details")
        records.append(_record_from(obj))
    return records


def parse_channels(text: str | None, *, source: str = "channels.json") -> dict[str, ChannelState]:
    """Parse ``channels.json`` (None or empty means no channels yet); ValueError says what is malformed."""
    if text is None or not text.strip():
        return {}
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError(f"{source} must hold a JSON object mapping channel names to pointers")
    out: dict[str, ChannelState] = {}
    for name, entry in raw.items():
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("version"), str)
            and isinstance(entry.get("history"), list)
            and all(isinstance(h, str) for h in entry["history"])
            and isinstance(entry.get("moved_at"), str)
            and isinstance(entry.get("audit_head"), str)
        )
        if not ok:
            raise ValueError(
                f"{source} entry {name!r} must have string version, moved_at, audit_head and a history list"
            )
        out[name] = ChannelState(entry["version"], tuple(entry["history"]), entry["moved_at"], entry["audit_head"])
    return out


def dump_channels(channels: Mapping[str, ChannelState]) -> bytes:
    """The bytes of ``channels.json`` (sorted, indented, so diffs read well)."""
    body = {name: channels[name].to_dict() for name in sorted(channels)}
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


def _move_problem(state: Mapping[str, ChannelState], rec: AuditRecord) -> str | None:
    """Whether ``rec`` is a legal move from ``state`` (each from_version matches, a rollback has somewhere to go, a
    release moves every channel to its version)."""
    if rec.action == "erase":
        return None if (rec.channel, rec.from_version, rec.to_version) == ("", None, "") else "an erasure moves nothing"
    rolls_back = rec.action in ("rollback", "release-rollback")
    for move in rec.changes:
        current = state.get(move.channel)
        if move.from_version != (current.version if current else None):
            now = current.version if current else "nothing"
            return f"from_version {move.from_version!r} does not match channel {move.channel!r}, which pointed to {now}"
        if rolls_back and (current is None or not current.history or current.history[-1] != move.to_version):
            return f"rollback to {move.to_version!r} does not match the previous version of channel {move.channel!r}"
        if rec.action == "release" and move.to_version != rec.to_version:
            return f"release of {rec.to_version!r} moves channel {move.channel!r} to {move.to_version!r}"
    return None


def apply_record(state: Mapping[str, ChannelState], rec: AuditRecord) -> dict[str, ChannelState]:
    """The channel pointers after ``rec``: a promotion pushes the old version on the history, a rollback pops it
    (for each channel of a release); an erasure leaves them as they are."""
    out = dict(state)
    for move in rec.changes:
        current = out.get(move.channel)
        if rec.action in ("promote", "release"):
            history = (*current.history, current.version) if current else ()
        else:
            history = current.history[:-1] if current else ()
        out[move.channel] = ChannelState(move.to_version, history, rec.ts, rec.hash)
    return out


def replay(records: Iterable[AuditRecord]) -> dict[str, ChannelState]:
    """The channel pointers that a sequence of records produces, starting from no channels."""
    state: dict[str, ChannelState] = {}
    for rec in records:
        state = apply_record(state, rec)
    return state


def _check_lines(lines: list[str], model: str) -> tuple[list[AuditRecord], AuditReport | None]:
    """Check the log line by line; return the records and a report for the first bad line (None when all good)."""
    records: list[AuditRecord] = []
    state: dict[str, ChannelState] = {}
    prev_hash = ZERO_HASH

    def bad(lineno: int, problem: str) -> tuple[list[AuditRecord], AuditReport]:
        return records, AuditReport(
            ok=False, n_records=len(lines), first_bad=lineno, problem=f"line {lineno}: {problem}"
        )

    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            return bad(lineno, "blank line")
        try:
            obj = json.loads(line)
        except ValueError as exc:
            return bad(lineno, f"not valid JSON ({exc})")
        problem = _field_problem(obj) if isinstance(obj, dict) else "not a JSON object"
        if problem:
            return bad(lineno, problem)
        if obj["model"] != model:
            return bad(lineno, f"record is for model {obj['model']!r}, but this is the log of {model!r}")
        if obj["seq"] != lineno:
            return bad(lineno, f"seq is {obj['seq']}, expected {lineno}: a record was removed, inserted or reordered")
        if obj["prev_hash"] != prev_hash:
            return bad(lineno, "prev_hash does not match the previous record's hash: the chain is broken here")
        if _hash_body(obj) != obj["hash"]:
            return bad(lineno, "hash does not match the record's content: the record was edited")
        rec = _record_from(obj)
        move = _move_problem(state, rec)
        if move:
            return bad(lineno, move)
        state = apply_record(state, rec)
        records.append(rec)
        prev_hash = rec.hash
    return records, None


def _check_channels(records: list[AuditRecord], channels: dict[str, ChannelState]) -> AuditReport | None:
    """Check the pointers against a well-formed log; None when they agree."""
    n = len(records)

    def bad(channel: str, problem: str, *, repairable: bool = False) -> AuditReport:
        return AuditReport(ok=False, n_records=n, problem=problem, channel=channel, repairable=repairable)

    if n and channels == replay(records[:-1]) and channels != replay(records):
        last = records[-1]
        return bad(
            last.channel,
            f"channels.json lags the last audit record (line {n}, channel {last.channel!r}): a move stopped between "
            f"writing the log and the pointers; the next promotion or rollback of this model completes it",
            repairable=True,
        )
    hashes = {rec.hash for rec in records}
    for name in sorted(channels):
        head = channels[name].audit_head
        if head not in hashes:
            return bad(
                name,
                f"channel {name!r}: its audit head {head[:12]}... is not in the audit log: records were cut from the "
                f"log's tail or the log was replaced",
            )
    last_line: dict[str, int] = {name: rec.seq for rec in records for name in rec.channels}
    expected = replay(records)
    for name in sorted(set(channels) | set(expected)):
        if name not in expected:
            return bad(name, f"channel {name!r} is in channels.json but no audit record ever moved it")
        if name not in channels:
            return bad(
                name, f"channel {name!r} was moved by audit record {last_line[name]} but is missing from channels.json"
            )
        have, want = channels[name], expected[name]
        if have.version != want.version:
            return bad(
                name,
                f"channel {name!r} points to {have.version!r}, but its last audit record (line {last_line[name]}) "
                f"moved it to {want.version!r}: the pointer was edited outside the log",
            )
        if have != want:
            return bad(
                name, f"channel {name!r}: history, moved_at or audit_head in channels.json disagree with the log"
            )
    return None


def check_log(log_text: str | None, channels_text: str | None, *, model: str) -> tuple[list[AuditRecord], AuditReport]:
    """Like :func:`verify_log`, and also return the records that passed the line checks (all of them when the
    report is ok or only repairable), so a writer parses the log once."""
    lines = (log_text or "").splitlines()
    records, report = _check_lines(lines, model)
    if report:
        return records, report
    try:
        channels = parse_channels(channels_text)
    except ValueError as exc:
        return records, AuditReport(ok=False, n_records=len(records), problem=f"channels.json is unreadable: {exc}")
    return records, _check_channels(records, channels) or AuditReport(ok=True, n_records=len(records))


def verify_log(log_text: str | None, channels_text: str | None, *, model: str) -> AuditReport:
    """Check a model's audit log and its ``channels.json`` against each other; never raises for bad content.

    Line by line: valid JSON, required fields and types, the model, ``seq`` counting up from 1, ``prev_hash``
    linking to the previous record, ``hash`` recomputing, and each move being legal from the pointers before it. Then
    the pointers: every channel's ``audit_head`` is in the log (catches a cut tail) and replaying the log gives the
    same pointers and histories (catches pointers moved outside the log).
    """
    return check_log(log_text, channels_text, model=model)[1]
