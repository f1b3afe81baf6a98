"""The Markdown report of an evaluation: Table 1 beside the paper's rows, the per-mode table
(Table 2 / Fig. 6), the per-K breakdown, the notices and the failed videos."""

from __future__ import annotations

import math
from typing import Any

from any2bokeh.evaluation.summary import COLUMNS, FD_ALTERNATES

MISSING = "—"


def _number(name: str, value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}" if name == "rm" else f"{value:.3f}"


def metric_cells(metrics: dict[str, float]) -> list[str]:
    """One cell per column of Table 1; FD from the weightless flow is shown as such."""
    cells = []
    for name, _ in COLUMNS:
        if name in metrics:
            cells.append(_number(name, metrics[name]))
        elif name == "fd" and any(alt in metrics for alt in FD_ALTERNATES):
            alt = next(alt for alt in FD_ALTERNATES if alt in metrics)
            cells.append(f"{_number(name, metrics[alt])} ({alt})")
        else:
            cells.append(MISSING)
    return cells


def _table(first: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table: the `first` columns, Table 1's columns, then the number of videos used."""
    header = [*first, *(title for _, title in COLUMNS), "Videos"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _used(group: dict[str, Any]) -> str:
    return f"{group['videos_used']}/{group['videos_total']}"


def table1_row(groups: dict[str, dict[str, Any]]) -> tuple[dict[str, float], str]:
    """Our Table 1 row: the clean synthetic set (mode I), VEPI from DAVIS; and the videos it used."""
    synthetic, davis = groups.get("synthetic/I"), groups.get("davis/real")
    metrics: dict[str, float] = {}
    used = []
    if synthetic is not None:
        metrics.update(synthetic["metrics"])
        used.append(f"{_used(synthetic)} synthetic")
    if davis is not None:
        if "vepi" in davis["metrics"]:
            metrics["vepi"] = davis["metrics"]["vepi"]
        if "time_per_frame" not in metrics and "time_per_frame" in davis["metrics"]:
            metrics["time_per_frame"] = davis["metrics"]["time_per_frame"]
        used.append(f"{_used(davis)} DAVIS")
    return metrics, ", ".join(used)


def markdown_report(results: dict[str, Any]) -> str:
    """The whole report as Markdown (written to results.md and printed)."""
    method = results["method"]
    groups = results["groups"]
    lines = [f"# Evaluation of `{method}`", ""]
    lines += [f"- {line}" for line in results["description"]]
    lines += ["", "## Table 1", ""]
    rows = []
    for name, paper in (results.get("paper") or {}).get("rows", {}).items():
        rows.append([f"{name} (paper)", *metric_cells(paper), MISSING])
    ours, used = table1_row(groups)
    rows.append([f"**{method}** (this run)", *metric_cells(ours), used or "0"])
    lines += _table(["Method"], rows)
    if results.get("paper"):
        lines += ["", f"Paper rows: {results['paper'].get('source', '')}".rstrip()]

    modes = [group for group in groups if group.startswith("synthetic/")]
    if modes:
        lines += ["", "## Per perturbation mode (Table 2, Fig. 6)", ""]
        rows = [[g.split("/")[1], *metric_cells(groups[g]["metrics"]), _used(groups[g])] for g in modes]
        lines += _table(["Mode"], rows)
        lines += ["", "## Per K", ""]
        rows = [
            [g.split("/")[1], label, *metric_cells(part["metrics"]), str(part["videos_used"])]
            for g in modes
            for label, part in groups[g]["per_k"].items()
        ]
        lines += _table(["Mode", "K"], rows)
    if "davis/real" in groups:
        lines += ["", "## DAVIS (real videos)", ""]
        davis = groups["davis/real"]
        lines += _table(["Set"], [["DAVIS", *metric_cells(davis["metrics"]), _used(davis)]])
    if results["notices"]:
        lines += ["", "## Notices", ""] + [f"- {notice}" for notice in results["notices"]]
    if results["failures"]:
        lines += ["", f"## Failed videos ({len(results['failures'])}, left out)", ""]
        lines += [f"- `{failure['video']}`: {failure['error']}" for failure in results["failures"]]
    return "\n".join(lines) + "\n"
