"""``ferry models list`` and ``show`` name each version's task and its primary metric with the value."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from ferry.cli import app
from ferry.train.summary import fmt


def test_models_list_shows_the_task_and_its_primary_metric(task_models: dict[str, Any]) -> None:
    registry = task_models["registry"]
    result = CliRunner().invoke(app, ["models", "list", "--registry", registry.url], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[2].strip(): line for line in result.output.splitlines() if line.count("│") > 5}
    for name, task, metric in (("defects", "multiclass", "macro_f1"), ("demand", "regression", "rmse")):
        version = task_models[name]["version"]
        line = lines[version.id]
        cells = [c.strip() for c in line.split("│")[1:-1]]
        assert cells[0] == name
        assert cells[3:6] == [task, metric, fmt(version.info["metrics"][metric])]
        assert "roc_auc" not in line


def test_models_show_names_the_task_and_its_primary_metric(task_models: dict[str, Any]) -> None:
    registry = task_models["registry"]
    version = task_models["demand"]["version"]
    result = CliRunner().invoke(app, ["models", "show", version.id, "--registry", registry.url], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert f"regression (primary metric rmse: {fmt(version.info['metrics']['rmse'])})" in result.output
