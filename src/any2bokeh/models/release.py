"""Convert the authors' released weights into a saved any2bokeh model folder (the loading: release_weights.py).

Convert once, then load the saved folder anywhere (`from_pretrained`, `renderer.path=`, `init_from=`):

    python -m any2bokeh.models.release --release checkpoints --svd <SVD img2vid-xt folder> --out <folder>

It prints the release's parameter count, each group dropped, the count after and the folder's size.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from any2bokeh.utils.atomic import atomic_path

from .any_to_bokeh import AnyToBokeh
from .release_weights import ReleaseReport, load_release


def _folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def convert(
    release: str | os.PathLike,
    svd: str | os.PathLike,
    out: str | os.PathLike,
    dtype: str | None = None,
    cond_tokens: bool = False,
):
    """Load the release and write it as a `save_pretrained` folder at `out` (atomically); returns the model.

    cond_tokens: switch the MPI condition tokens on (for fine-tuning with the MPI prior), keeping the release's
        `linear` and `conv_in_mpi`, which were never trained.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"--out {out} exists and is not empty; choose a new folder")
    report = ReleaseReport()
    model = load_release(AnyToBokeh, release, svd, dtype=dtype, report=report, cond_tokens=cond_tokens)
    print(f"release: {report.parameters:,} parameters in unet/unet/ and vae/")
    for group, count in sorted(report.dropped.items()):
        print(f"  dropped {group}: {count:,} parameters")
    networks = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("image_encoder."))
    clip = sum(p.numel() for name, p in model.named_parameters() if name.startswith("image_encoder."))
    print(f"converted: {networks:,} parameters in the UNet and VAE, plus {clip:,} of CLIP from {svd}")
    with atomic_path(out) as temporary:
        model.save_pretrained(temporary)
    print(f"wrote {out} ({_folder_size(out) / 2**30:.2f} GiB, {str(model.dtype).removeprefix('torch.')})")
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m any2bokeh.models.release",
        description="Convert the authors' released Any-to-Bokeh weights into a saved any2bokeh model folder.",
    )
    parser.add_argument("--release", required=True, help="the unpacked release (with unet/unet/ and vae/)")
    parser.add_argument("--svd", required=True, help="a stock SVD img2vid-xt folder (for CLIP)")
    parser.add_argument("--out", required=True, help="the folder to write (must not exist or be empty)")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default=None, help="weights dtype (fp32)")
    parser.add_argument(
        "--cond-tokens",
        action="store_true",
        help="switch the MPI condition tokens on, for fine-tuning with the MPI prior (the release never trained "
        "them: the output changes at step 0)",
    )
    args = parser.parse_args(argv)
    try:
        convert(args.release, args.svd, args.out, args.dtype, args.cond_tokens)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
