"""The settings index (the docstring of ferry.settings) names every settings class in ferry, with its env prefix."""

from __future__ import annotations

import importlib
import pkgutil

from pydantic_settings import BaseSettings

import ferry
import ferry.settings


def every_settings_class() -> dict[str, str]:
    """Each BaseSettings subclass defined in a ferry module, by name, with its env prefix."""
    found: dict[str, str] = {}
    for info in pkgutil.walk_packages(ferry.__path__, "ferry."):
        if info.name.startswith("ferry.cli"):
            continue  # the command line defines no settings; importing it is not needed here
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseSettings) and value.__module__ == info.name:
                found[value.__name__] = str(value.model_config.get("env_prefix", ""))
    return found


def test_the_index_names_every_settings_class_and_its_prefix() -> None:
    index = ferry.settings.__doc__ or ""
    rows = [line for line in index.splitlines() if line.startswith("| ") and "Settings" in line]
    found = every_settings_class()
    assert len(found) >= 8
    assert len(rows) == len(found), f"index rows {rows} vs classes {sorted(found)}"
    for name, prefix in found.items():
        assert any(name in row and f"``{prefix}``" in row for row in rows), f"{name} ({prefix}) is not in the index"
