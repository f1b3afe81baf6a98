"""The robustness plot of Fig. 6: PSNR, FVD and FD against the disparity perturbation mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from any2bokeh.utils.atomic import atomic_path

PANELS = (("psnr", "PSNR ↑"), ("fvd", "FVD ↓"), ("fd", "FD ↓"))


def plot_modes(groups: dict[str, dict[str, Any]], method: str, path: str | Path) -> Path:
    """Write a PNG with one panel per metric, the modes of the synthetic set on the x axis.

    A metric that was not computed (no weights, clips too short) gets an empty panel that says so; FD from the
    weightless flow is titled as such.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    modes = [group.split("/")[1] for group in groups if group.startswith("synthetic/")]
    figure, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.2), constrained_layout=True)
    for axis, (name, title) in zip(axes, PANELS):
        key = name
        if name == "fd" and not _has(groups, "fd") and _has(groups, "fd_dis"):
            key, title = "fd_dis", "FD (weightless flow, fd_dis) ↓"
        values = [groups[f"synthetic/{mode}"]["metrics"].get(key) for mode in modes]
        axis.set_title(title)
        axis.set_xlabel("perturbation mode (Table 2)")
        if all(value is None for value in values):
            axis.text(
                0.5,
                0.5,
                "not computed\n(see the notices in results.md)",
                ha="center",
                va="center",
                transform=axis.transAxes,
            )
            axis.set_xticks([])
            axis.set_yticks([])
            continue
        axis.plot(modes, [float("nan") if v is None else v for v in values], marker="o", label=method)
        axis.grid(alpha=0.3)
        axis.legend()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return path


def _has(groups: dict[str, dict[str, Any]], name: str) -> bool:
    return any(name in group["metrics"] for key, group in groups.items() if key.startswith("synthetic/"))
