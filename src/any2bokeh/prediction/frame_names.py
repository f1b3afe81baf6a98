"""Focus and K written into disparity file names, as the authors' demo inputs carry them.

Their disparity frames are 8-bit PNGs named `<frame>_zf_<d_f>.png`, or `<frame>_zf_<d_f>_k_<K>.png` when K
changes through the clip (their CSV's `k` column then says `change`). d_f is a fraction of the file's full
range (d_f * 255 is compared with the 8-bit values); `predict.py` normalises disparity over the clip, so d_f
is mapped through the same min-max: (d_f * full - min) / (max - min).

`predict.py` takes d_f from the names when no focus is set (`focus.value`, `point`, `mask`, `keyframes` all
null) and K when `k` is null or `names`; a manifest row's `k: change` means `names`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from any2bokeh.io import list_frames
from any2bokeh.io.files import read_image_array

_NUMBER = r"([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)"
_FOCUS = re.compile(rf"_zf_{_NUMBER}")
_K = re.compile(rf"_k_{_NUMBER}")


@dataclass
class NamedCurves:
    """Per-frame values read from the names: d_f as a fraction of the file range, K in pixels; None if absent."""

    disp_focus: Tensor | None
    k: Tensor | None
    files: list[Path]


def _values(files: list[Path], pattern: re.Pattern, what: str) -> Tensor | None:
    found = [pattern.search(file.stem) for file in files]
    if not any(found):
        return None
    missing = [file.name for file, match in zip(files, found) if match is None]
    if missing:
        raise ValueError(f"{what} is in some disparity file names but not in {missing[:3]} ({len(missing)} files)")
    return torch.tensor([float(match.group(1)) for match in found], dtype=torch.float64)


def named_curves(source: str | Path | None) -> NamedCurves | None:
    """The `_zf_` and `_k_` values of a disparity frame folder, in frame order; None without such names."""
    if source is None or not Path(source).is_dir():
        return None
    files = list_frames(Path(source))
    if not files:
        return None
    curves = NamedCurves(_values(files, _FOCUS, "_zf_<d_f>"), _values(files, _K, "_k_<K>"), files)
    if curves.disp_focus is None and curves.k is None:
        return None
    return curves


def normalised_focus(curves: NamedCurves, folder: str | Path) -> Tensor:
    """The names' d_f [T] on the clip's min-max normalised disparity scale (what `predict.py` renders with)."""
    from any2bokeh.inference.disparity import read_disparity_file

    sample = read_image_array(curves.files[0])
    full = float(np.iinfo(sample.dtype).max) if sample.dtype.kind in "ui" else 1.0
    raw = read_disparity_file(folder)
    low, high = float(raw.min()), float(raw.max())
    span = high - low if high > low else 1.0
    return ((curves.disp_focus * full - low) / span).clamp(0, 1).float()
