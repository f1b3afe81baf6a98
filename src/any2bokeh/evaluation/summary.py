"""From per-video records to the set-level numbers of Tables 1 and 2.

Averaging follows §4.1 and Appendix A.4:
- PSNR, SSIM and LPIPS are per-frame scores, averaged over every frame of the set;
- RM, FD and VEPI are per-video scores (means over a video's frames or frame pairs), averaged
  over the videos;
- VFID-I and FVD are Fréchet distances between the I3D feature sets of all renders and of all
  ground truths, so they are computed here from the features each record keeps;
- the time per frame is averaged over the videos.
Records are taken in key order, so the result does not depend on which process wrote which.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from any2bokeh.metrics.functional import frechet_distance, gaussian_statistics

# The paper's column order (Table 1), with the keys used in records and results.json.
COLUMNS = (
    ("fd", "FD↓"),
    ("rm", "RM↓"),
    ("vfid_i", "VFID-I↓"),
    ("fvd", "FVD↓"),
    ("ssim", "SSIM↑"),
    ("psnr", "PSNR↑"),
    ("lpips", "LPIPS↓"),
    ("vepi", "VEPI↑"),
    ("time_per_frame", "Time↓ (s/frame)"),
)
# FD measured with the weightless flow instead of RAFT: reported under its own key, never as "fd".
FD_ALTERNATES = ("fd_dis",)
# scores that are means over a video's frames; the others (RM, FD, VEPI, time) are per video
PER_FRAME = ("psnr", "ssim", "lpips")
FEATURE_METRICS = ("vfid_i", "fvd")


def frechet_from_features(pred: Tensor, target: Tensor) -> float:
    """The Fréchet distance between two feature sets [N, D]; NaN with fewer than 2 rows a side."""
    if len(pred) < 2 or len(target) < 2:
        return math.nan
    return float(frechet_distance(*gaussian_statistics(pred), *gaussian_statistics(target)))


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The set-level value of every metric the records hold.

    records: per-video records (see scoring.py): `frames`, `scores` {name: the video's score},
    `features` {name: {"pred": [N, D], "target": [N, D]}}.
    """
    out: dict[str, float] = {}
    names = sorted({name for record in records for name in record["scores"]})
    for name in names:
        scored = [record for record in records if name in record["scores"]]
        # a per-frame score is a mean over the video's frames: weight it by them
        weights = [record["frames"] if name in PER_FRAME else 1 for record in scored]
        out[name] = sum(w * float(r["scores"][name]) for w, r in zip(weights, scored)) / sum(weights)
    for name in FEATURE_METRICS:
        pairs = [record["features"][name] for record in records if name in record["features"]]
        if pairs:
            pred = torch.cat([pair["pred"] for pair in pairs])
            target = torch.cat([pair["target"] for pair in pairs])
            out[name] = frechet_from_features(pred, target)
    return out


def k_label(k: Tensor) -> str:
    """A video's K for the per-K breakdown: "16", or "4-32" for a ramp."""
    first, last = float(k[0]), float(k[-1])
    return f"{first:g}" if torch.all(k == k[0]) else f"{first:g}-{last:g}"


def group_summaries(keyed: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Summaries per test set and mode, each with its per-K breakdown.

    keyed: (job key "testset/mode/video", record) pairs.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for key, record in sorted(keyed, key=lambda pair: pair[0]):
        groups.setdefault(key.rsplit("/", 1)[0], []).append(record)
    result = {}
    for group, records in groups.items():
        by_k: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            by_k.setdefault(record["k_label"], []).append(record)
        result[group] = {
            "metrics": summarize(records),
            "videos_used": len(records),
            "per_k": {
                label: {"metrics": summarize(rs), "videos_used": len(rs)}
                for label, rs in sorted(by_k.items(), key=lambda item: _k_sort_key(item[0]))
            },
        }
    return result


def _k_sort_key(label: str) -> tuple[float, str]:
    try:
        return float(label.split("-")[0]), label
    except ValueError:
        return math.inf, label
