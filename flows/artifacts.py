"""Table artifacts, the one way the flows make them: every cell escaped (:func:`ferry.train.summary.artifact_rows`),
since the Prefect UI renders each cell as markdown (a gate threshold ``>= 500`` would show as a block quote)."""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_table_artifact

from ferry.train.summary import artifact_rows


def table_artifact(rows: list[dict[str, Any]], *, key: str, description: str | None = None) -> None:
    """A Prefect table artifact of ``rows`` whose cells read in the UI as they are written."""
    create_table_artifact(artifact_rows(rows), key=key, description=description)
