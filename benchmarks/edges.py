"""Edge benchmark: does the subject stay sharp to its last hair when the disparity is wrong at its outline?

Random layered scenes (`random_layer_scene`: textured objects with soft, hair-like alpha edges over a background
with highlights), focused on one object. The renderers get the all-in-focus frame and a disparity map perturbed
as in Table 2 (modes I clean, II blur, III + elastic warp at the outline, IV + erosion or dilation), and render
with the classical renderer without and with the subject's matte (`matte=`, any2bokeh.optics.matte). Scored
against the layered ground truth (`render_layers` on the true layers):

- VEPI: edge correlation with the input inside the (dilated) subject mask (Appendix A.4);
- PSNR against the ground truth, whole frame;
- subject detail: the render's Laplacian energy inside the eroded subject mask over the input's (1 = all kept);
- background detail: the same outside the dilated mask (lower = blurred; the matte should not change it).

    python benchmarks/edges.py                       # 8 scenes at 384x256, K = 24, the true soft matte
    python benchmarks/edges.py --binary              # the matte a user has: a binary mask
    python benchmarks/edges.py --tracker             # the weightless tracker's region from a point on the subject
    python benchmarks/edges.py --scenes 16 --size 576x1024

On real clips in the DAVIS layout (`--davis <root>`, with `--disparity <folder>` holding `<sequence>.npy` or a PNG
folder per sequence, as `evaluate.py`'s DAVIS set reads them), focused on the annotated object at K = 16, the same
columns but PSNR (there is no ground truth; `--object-id`, default 1, picks the palette annotations' object): VEPI, the subject's detail and the background's, without and with the
annotation as the matte, per sequence and on average (the paper's VEPI: Any-to-Bokeh 0.944, BokehMe 0.937).

    python benchmarks/edges.py --davis DAVIS --disparity DAVIS/disparity [--sequences bear,car] [--frames 25]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from any2bokeh.data.layer_scenes import random_layer_scene
from any2bokeh.data.perturb import perturb_disparity
from any2bokeh.inference.renderers import ClassicalRenderer
from any2bokeh.metrics.functional import per_video_vepi
from any2bokeh.optics import render_layers

sys.path.insert(0, str(Path(__file__).parent))
from predict import frame_and_disparity, psnr  # noqa: E402

MODES = ("I", "II", "III", "IV")
LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


def detail(image: torch.Tensor, region: torch.Tensor) -> float:
    """Laplacian energy of the grey image [1, 3, H, W] inside region [1, 1, H, W]."""
    grey = image.mean(dim=1, keepdim=True)
    return float((F.conv2d(grey, LAPLACE, padding=1) ** 2 * region).sum())


def scene_case(seed: int, height: int, width: int, K: float) -> dict:
    """A scene, its frame, normalised disparity, d_f, the subject's matte and the layered ground truth."""
    scene = random_layer_scene(height, width, num_objects=2, K=K, seed=seed)
    frame, raw = frame_and_disparity(scene)
    d_min, d_max = float(raw.min()), float(raw.max())
    disparity = ((raw - d_min) / (d_max - d_min))[:, None]  # [1, 1, H, W]
    d_f = min(max((float(scene.disp_focus[0]) - d_min) / (d_max - d_min), 0.0), 1.0)
    target = int((scene.planes[0, :, 2] - 1 / scene.disp_focus[0]).abs().argmin())
    # the subject as the frame shows it: its alpha behind the nearer layers
    visible = scene.alphas[0, target]
    for nearer in range(target):
        visible = visible * (1 - scene.alphas[0, nearer])
    k_norm = float(scene.K[0]) * (d_max - d_min)  # pixels per unit of normalised disparity at this width
    truth = render_layers(scene.images, scene.alphas, scene.planes, scene.K, scene.disp_focus)
    return dict(frame=frame, disparity=disparity, d_f=d_f, matte=visible[None], k=k_norm * 1024 / width, truth=truth)


def score(case: dict, render: torch.Tensor) -> dict:
    mask = case["matte"] > 0.5
    square = torch.ones(1, 1, 9, 9)
    inner = (F.conv2d((~mask).float(), square, padding=4) == 0).float()  # eroded subject
    outer = (F.conv2d(mask.float(), square, padding=4) == 0).float()  # outside the dilated subject
    frame = case["frame"]
    return dict(
        vepi=float(per_video_vepi(frame[None], render[None], mask.float()[None])[0]),
        psnr=psnr(render, case["truth"]),
        subject=detail(render, inner) / max(detail(frame, inner), 1e-12),
        background=detail(render, outer) / max(detail(frame, outer), 1e-12),
    )


def tracker_matte(case: dict, disparity: torch.Tensor) -> torch.Tensor:
    """The weightless tracker's region [1, 1, H, W] grown on the (perturbed) disparity from the subject's most
    central pixel, as `predict.py` makes it from a focus point."""
    from any2bokeh.inference.tracking import track_subject

    mask = case["matte"][0, 0] > 0.5
    inside = F.conv2d(mask[None, None].float(), torch.ones(1, 1, 9, 9), padding=4)[0, 0] * mask
    row, col = divmod(int(inside.flatten().argmax()), mask.shape[1])
    point = ((col + 0.5) / mask.shape[1], (row + 0.5) / mask.shape[0])
    try:
        track = track_subject(case["frame"], disparity[:, 0], point)
    except ValueError:  # the point lies on no region of the disparity: predict.py fails such a video
        return None
    return F.interpolate(track.masks[:, None].float(), size=mask.shape, mode="bilinear", align_corners=False)


def run(scenes: int, height: int, width: int, K: float, binary: bool = False, tracker: bool = False) -> dict:
    renderer = ClassicalRenderer(area=height * width)
    results = {(mode, matte): [] for mode in MODES for matte in (False, True)}
    for seed in range(scenes):
        case = scene_case(seed, height, width, K)
        for mode in MODES:
            generator = torch.Generator().manual_seed(seed)
            disparity = perturb_disparity(case["disparity"], mode, generator, (case["matte"] > 0.5).float())
            args = (case["frame"], disparity, torch.tensor([case["d_f"]]), torch.tensor([case["k"]]))
            if tracker:
                given = tracker_matte(case, disparity)
                if given is None:
                    continue  # no region to compare with: the scene is left out of this mode
            else:
                given = (case["matte"] > 0.5).float() if binary else case["matte"]
            for matte in (False, True):
                render = renderer(*args, matte=given if matte else None)
                results[(mode, matte)].append(score(case, render))
    return results


def score_video(frames: torch.Tensor, render: torch.Tensor, masks: torch.Tensor) -> dict:
    """VEPI and the detail ratios of a clip: frames, render [T, 3, H, W] in [0, 1], masks [T, 1, H, W]."""
    mask = masks > 0.5
    square = torch.ones(1, 1, 9, 9)
    inner = (F.conv2d((~mask).float(), square, padding=4) == 0).float()
    outer = (F.conv2d(mask.float(), square, padding=4) == 0).float()
    return dict(
        vepi=float(per_video_vepi(frames[None], render[None], mask.float()[None])[0]),
        subject=detail_ratio(render, frames, inner),
        background=detail_ratio(render, frames, outer),
    )


def detail_ratio(render: torch.Tensor, frames: torch.Tensor, region: torch.Tensor) -> float:
    """The render's Laplacian energy in `region` over the input's, summed over the frames."""
    ours = sum(detail(render[t : t + 1], region[t : t + 1]) for t in range(len(frames)))
    theirs = sum(detail(frames[t : t + 1], region[t : t + 1]) for t in range(len(frames)))
    return ours / max(theirs, 1e-12)


def run_davis(
    root: str, disparity: str, sequences: list[str] | None, frames: int, K: float, object_id: int = 1
) -> dict:
    """{(sequence, matte): score} on DAVIS-layout clips (see the module docstring)."""
    from any2bokeh.evaluation.davis import DavisSet, davis_jobs

    dataset = DavisSet(root, sequences=sequences, num_frames=frames, object_id=object_id, disparity=disparity, k=K)
    renderer = ClassicalRenderer()
    results = {}
    for job in davis_jobs(root, sequences=sequences):
        video = dataset.load(job)
        args = (video.frames, video.disparity, video.disp_focus, video.k * 1024 / video.frames.shape[-1])
        for matte in (False, True):
            render = renderer(*args, matte=video.mask if matte else None).float().clamp(0, 1)
            results[(job.video, matte)] = score_video(video.frames, render, video.mask)
    return results


def format_davis_table(results: dict) -> str:
    lines = ["| sequence | matte | VEPI | subject detail | background detail |", "|---|---|---|---|---|"]
    names = list(dict.fromkeys(name for name, _ in results))
    for name in [*names, "mean"]:
        for matte in (False, True):
            rows = [results[(n, matte)] for n in names] if name == "mean" else [results[(name, matte)]]
            mean = {key: statistics.mean(row[key] for row in rows) for key in rows[0]}
            lines.append(
                f"| {name} | {'on' if matte else 'off'} | {mean['vepi']:.3f} | {mean['subject']:.3f} | "
                f"{mean['background']:.3f} |"
            )
    return "\n".join(lines)


def format_table(results: dict) -> str:
    lines = [
        "| mode | matte | VEPI | PSNR (dB) | subject detail | background detail |",
        "|---|---|---|---|---|---|",
    ]
    most = max(len(rows) for rows in results.values())
    for (mode, matte), rows in results.items():
        if not rows:
            continue
        mean = {key: statistics.mean(row[key] for row in rows) for key in rows[0]}
        # a mode where the tracker found no region on some scenes: how many it holds
        name = mode if len(rows) == most else f"{mode} ({len(rows)} of {most} scenes)"
        lines.append(
            f"| {name} | {'on' if matte else 'off'} | {mean['vepi']:.3f} | {mean['psnr']:.2f} | "
            f"{mean['subject']:.3f} | {mean['background']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--size", default="256x384", help="HxW")
    parser.add_argument(
        "--K",
        type=float,
        default=None,
        help="blur in the paper's unit (pixels at 1024 px width); default 24, 16 with --davis",
    )
    parser.add_argument("--binary", action="store_true", help="give the renderer the mask alpha > 0.5, as a user's is")
    parser.add_argument("--tracker", action="store_true", help="the matte: the tracker's region from a point")
    parser.add_argument("--davis", help="a DAVIS-layout root: score real clips instead of synthetic scenes")
    parser.add_argument("--disparity", help="with --davis: the folder of <sequence>.npy (or PNG folders)")
    parser.add_argument("--sequences", help="with --davis: comma-separated sequence names (default: all)")
    parser.add_argument("--frames", type=int, default=25, help="with --davis: frames per sequence")
    parser.add_argument("--object-id", type=int, default=1, help="with --davis: the palette annotations' object")
    args = parser.parse_args()
    if args.davis:
        if not args.disparity:
            sys.exit("--davis needs --disparity <folder of <sequence>.npy>")
        sequences = args.sequences.split(",") if args.sequences else None
        K = 16.0 if args.K is None else args.K
        print(
            f"DAVIS clips in {args.davis}, {args.frames} frames each, K = {K}; {platform.machine()}, torch {torch.__version__}"
        )
        print(format_davis_table(run_davis(args.davis, args.disparity, sequences, args.frames, K, args.object_id)))
        return
    K = 24.0 if args.K is None else args.K
    height, width = (int(v) for v in args.size.split("x"))
    given = "binary masks (alpha > 0.5)" if args.binary else "the true soft alpha"
    given = "the tracker's region from a point on the subject" if args.tracker else given
    print(
        f"{args.scenes} scenes at {width}x{height}, K = {K}, matte: {given}; {platform.machine()}, torch {torch.__version__}"
    )
    print(format_table(run(args.scenes, height, width, K, args.binary, args.tracker)))


if __name__ == "__main__":
    main()
