"""Scoring one rendered video: the record that `summary.py` turns into Table 1's numbers.

The metrics are those of `any2bokeh.metrics` (§4.1, Appendix A.4). Networks load from the local
files of `cfg.metrics`; a metric whose file is not configured is left out, with a notice in the
report, and FD without RAFT weights uses the weightless DIS flow under the name `fd_dis`.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor

from any2bokeh.evaluation.records import EvalVideo
from any2bokeh.evaluation.summary import k_label
from any2bokeh.metrics import (
    DisFlow,
    RaftFlow,
    functional,
    load_i3d,
    load_raft,
    lpips_network,
    no_downloads,
)
from any2bokeh.metrics.i3d import TorchScriptI3D

# the clip lengths of §4.1: VFID-I on 10-frame clips, FVD on 16-frame clips
CLIP_LENGTHS = {"vfid_i": 10, "fvd": 16}


def metric_notices(metrics_cfg: DictConfig) -> list[str]:
    """One line per metric left out or replaced because its weights are not configured."""
    notices = []
    if not metrics_cfg.get("lpips"):
        notices.append(
            "LPIPS left out: set metrics.lpips to torchvision's squeezenet1_1 ImageNet state dict "
            "(LPIPS's squeeze backbone)"
        )
    if not metrics_cfg.get("raft"):
        notices.append(
            "FD measured with the weightless DIS flow and reported as fd_dis, which is not the paper's "
            "RAFT FD: set metrics.raft to torchvision's raft_large state dict"
        )
    if not metrics_cfg.get("i3d"):
        notices.append(
            "VFID-I and FVD left out: set metrics.i3d to an I3D (Kinetics-400) state dict (rgb_imagenet.pt), "
            "or StyleGAN-V's i3d_torchscript.pt for FVD alone"
        )
    return notices


class Scorer:
    """`scorer(video, render, seconds) -> record` with the networks of `metrics_cfg` on `device`.

    A record (plain tensors, floats and strings, for `torch.load(weights_only=True)`):
        frames: T; k_label: the video's K for the per-K breakdown;
        scores: {name: float}: psnr, ssim, lpips (means over frames), rm, fd or fd_dis (means over
            frame pairs), vepi (mean over frames), time_per_frame (seconds);
        features: {"vfid_i" | "fvd": {"pred": [N, D], "target": [N, D]}}: I3D features of the clips;
        skipped: {name: why}: metrics that do not apply to this video.
    """

    def __init__(self, metrics_cfg: DictConfig, device: torch.device | str = "cpu"):
        device = torch.device(device)
        self.lpips = self.i3d = None
        with no_downloads():
            if metrics_cfg.get("lpips"):
                self.lpips = lpips_network(metrics_cfg.lpips).to(device)
            if metrics_cfg.get("raft"):
                self.flow = RaftFlow(load_raft(metrics_cfg.raft)).to(device)
            else:
                self.flow = DisFlow()
            if metrics_cfg.get("i3d"):
                self.i3d = load_i3d(metrics_cfg.i3d).to(device)

    @torch.no_grad()
    def __call__(self, video: EvalVideo, render: Tensor, seconds: float) -> dict[str, Any]:
        num_frames = video.frames.shape[0]
        if render.shape != video.frames.shape:
            raise ValueError(f"the render has shape {tuple(render.shape)}, the input {tuple(video.frames.shape)}")
        record = {
            "frames": num_frames,
            "k_label": k_label(video.k),
            "scores": {"time_per_frame": seconds / num_frames},
            "features": {},
            "skipped": {},
        }
        # [T, 3, H, W] -> [1, T, 3, H, W]: the metrics take batches of videos
        pred = render.float()[None]
        if video.mask is not None and video.target is None:
            # real videos (Appendix A.4): edges of the subject against the all-in-focus input
            record["scores"]["vepi"] = float(functional.per_video_vepi(video.frames[None], pred, video.mask[None])[0])
        if video.target is None:
            return record
        target = video.target.float()[None]
        scores = record["scores"]
        scores["psnr"] = float(functional.psnr(pred, target))
        scores["ssim"] = float(functional.ssim(pred, target))
        if self.lpips is not None:
            scores["lpips"] = float(functional.per_video_lpips(pred, target, self.lpips)[0])
        if num_frames >= 2:
            scores["rm"] = float(functional.per_video_rm(pred, target)[0])
            scores[self.flow.metric_name] = float(functional.per_video_flow_difference(pred, target, self.flow)[0])
        else:
            record["skipped"]["rm"] = record["skipped"]["fd"] = "needs 2 frames"
        if self.i3d is not None:
            for name, length in CLIP_LENGTHS.items():
                if num_frames < length:
                    record["skipped"][name] = f"needs clips of {length} frames"
                elif name == "vfid_i" and isinstance(self.i3d, TorchScriptI3D):
                    record["skipped"][name] = "the TorchScript I3D gives logits only (use a state-dict I3D)"
                else:
                    # I3D features [N, D] of the video's consecutive clips: pooled (VFID-I) or logits (FVD)
                    record["features"][name] = {
                        side: functional.clip_features(videos, self.i3d, length, logits=name == "fvd").float().cpu()
                        for side, videos in (("pred", pred), ("target", target))
                    }
        return record


class ScorerBuilder:
    """Builds the scorer in each process, on its device (picklable for spawned processes)."""

    def __init__(self, metrics_cfg: DictConfig):
        self.metrics_cfg = metrics_cfg

    def __call__(self, device: torch.device) -> Scorer:
        return Scorer(self.metrics_cfg, device)
