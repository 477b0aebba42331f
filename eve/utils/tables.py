"""Markdown tables of results (README, benchmarks, evaluations) without a tabulate dependency."""

from __future__ import annotations

import pandas as pd


def markdown(df: pd.DataFrame) -> str:
    """A DataFrame as a markdown table (index first), floats to 3 decimals."""
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    head = [df.index.name or ""] + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = df.astype(object).values.tolist()  # per-column types kept: counts stay integers beside floats
    lines += ["| " + " | ".join([str(i)] + [fmt(v) for v in row]) + " |" for i, row in zip(df.index, rows)]
    return "\n".join(lines)
