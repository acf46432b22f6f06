"""The agent's settings: numbers in ``config.json`` next to the repository URL, model and channel.

``ferry-edge init`` writes every setting with its default; an agent reading a config.json without one uses the
default, and a value of the wrong type or out of bounds is a ConfigError naming the setting, its bounds and what it
is for. Edit config.json to change one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ferry_edge.errors import ConfigError

__all__ = ["DEFAULTS", "SETTINGS", "Setting", "check_setting"]


@dataclass(frozen=True)
class Setting:
    default: float
    low: float
    high: float
    description: str
    integer: bool = False
    low_open: bool = False  # the low bound itself is not allowed


SETTINGS: dict[str, Setting] = {
    "budget_ms": Setting(50.0, 0, 60_000, "single-row latency budget of the self-test, in ms", low_open=True),
    "max_crashes": Setting(3, 1, 1000, "runtime crashes of a model before rolling back", integer=True),
    "max_bundle_bytes": Setting(512 * 1024 * 1024, 1, 1 << 40, "largest bundle accepted, in bytes", integer=True),
    "selftest_timeout_s": Setting(120.0, 0, 86_400, "time the self-test child may take, in s", low_open=True),
    "selftest_attempts": Setting(3, 1, 100, "self-tests that did not complete before a rejection", integer=True),
    "selftest_backoff_s": Setting(60.0, 0, 86_400, "wait before retrying an incomplete self-test, doubling, in s"),
    "sketch_min_count": Setting(20, 1, 1_000_000, "values of a feature before its distribution is sent", integer=True),
}
"""The settings in config.json, each with its default and bounds; ``ferry-edge init`` writes the defaults."""

DEFAULTS: dict[str, Any] = {name: s.default for name, s in SETTINGS.items()}


def check_setting(name: str, value: Any, setting: Setting) -> float:
    """``value`` as the setting's type, or ConfigError naming the setting and why."""
    kind = "an integer" if setting.integer else "a number"
    wrong_type = isinstance(value, bool) or not isinstance(value, int | float)
    if wrong_type or (setting.integer and not float(value).is_integer()):
        raise ConfigError(f"config.json setting {name!r}: expected {kind}, got {value!r} ({setting.description})")
    low_ok = value > setting.low if setting.low_open else value >= setting.low
    if not low_ok or value > setting.high:
        bounds = f"{'(' if setting.low_open else '['}{setting.low:g}, {setting.high:g}]"
        raise ConfigError(f"config.json setting {name!r}: {value!r} is outside {bounds} ({setting.description})")
    return int(value) if setting.integer else float(value)
