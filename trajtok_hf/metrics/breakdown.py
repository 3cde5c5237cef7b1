"""Breakdowns of per-clip or per-object scores by a grouping key, and a markdown table of them.

A segmentation score averaged over a whole evaluation set hides where a segmenter fails. Grouping the per-clip
scores of :func:`~trajtok_hf.metrics.segmentation_metrics` (``return_per_clip=True``) by source image or object
count, or the per-object scores of :func:`~trajtok_hf.metrics.object_scores` by object size, shows it:

    >>> rows = mean_by_group(["cat", "cup", "cat"], {"FG-ARI": [1.0, 0.5, 0.0]}, count_name="clips")
    >>> rows["cat"]
    {'FG-ARI': 0.5, 'clips': 2}
    >>> print(markdown_table(rows, ["FG-ARI", "clips"], first_column="photo"))
    | photo | FG-ARI | clips |
    |---|---:|---:|
    | cat | 0.500 | 2 |
    | cup | 0.500 | 1 |
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["mean_by_group", "markdown_table"]


def mean_by_group(
    groups: Sequence[Any],
    values: Mapping[str, Any],
    *,
    order: Sequence[Any] | None = None,
    count_name: str = "count",
) -> dict[str, dict[str, float]]:
    """NaN-skipping mean of every array of ``values`` within each group: ``{group: {key: mean, count_name: n}}``.

    Args:
        groups: one group label per item (clip or object); labels are turned into strings.
        values: ``{key: (num_items,) array}``; a NaN (a score undefined on that item) is left out of that key's mean.
        order: groups in the order the result lists them; groups not in it follow, sorted (numerically when every
            label is an integer). ``None``: sorted.
        count_name: key of the number of items of a group.

    A group whose items are all NaN for a key gets NaN for that key.
    """
    labels = np.asarray([str(g) for g in groups], dtype=object)
    table = {}
    for key, column in values.items():
        array = np.asarray(column, dtype=np.float64).reshape(-1)
        if array.size != labels.size:
            raise ValueError(f"`values[{key!r}]` has {array.size} entries for {labels.size} `groups`")
        table[key] = array
    if count_name in table:
        raise ValueError(f"`count_name` {count_name!r} is also a key of `values`")
    out: dict[str, dict[str, float]] = {}
    for group in _ordered(set(labels.tolist()), order):
        chosen = labels == group
        row = {key: _nanmean(array[chosen]) for key, array in table.items()}
        row[count_name] = int(chosen.sum())
        out[group] = row
    return out


def _ordered(present: set[str], order: Sequence[Any] | None) -> list[str]:
    first = [str(g) for g in order or () if str(g) in present]
    rest = present - set(first)
    numeric = all(g.lstrip("-").isdigit() for g in rest)
    return first + sorted(rest, key=int if numeric else None)


def _nanmean(values: np.ndarray) -> float:
    valid = values[~np.isnan(values)]
    return float(valid.mean()) if valid.size else float("nan")


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return str(value).replace("|", "\\|")
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def markdown_table(
    rows: Mapping[str, Mapping[str, Any]], columns: Sequence[str], *, first_column: str = "", digits: int = 3
) -> str:
    """A GitHub markdown table: one line per row of ``rows`` (``{label: {column: value}}``), in its order.

    Floats get ``digits`` decimals (NaN and missing values show as ``–``), ints are printed as they are, other
    values as text; number columns are right-aligned.
    """
    if not columns:
        raise ValueError("`columns` must name at least one column")
    header = f"| {first_column} | " + " | ".join(columns) + " |"
    rule = "|---|" + "|".join("---:" for _ in columns) + "|"
    lines = [header, rule]
    for label, row in rows.items():
        cells = [_cell(row.get(column, float("nan")), digits) for column in columns]
        lines.append(f"| {_cell(label, digits)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
