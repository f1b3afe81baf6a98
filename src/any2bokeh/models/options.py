"""The options of the one-step model that are not weights; saved with it (`AnyToBokeh.config`).

The defaults are this project's model. `RELEASE_OPTIONS` is what the authors' released network computes
(`AnyToBokeh.from_release` sets them; docs/model.md lists what each one changes).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AnyToBokehOptions:
    """Options of `AnyToBokeh`, one line each.

    n_planes: N, the number of focal-plane-adapted MPI regions.
    mpi_alpha: the exponent on d_f in the MPI thresholds (1 in training; the authors also used 1.5 at inference).
    fps, motion_bucket_id, noise_aug_strength: SVD's added time ids, fed to the UNet as given.
    timestep: the fixed timestep of the one-step model.
    use_image_encoder: CLIP context per frame; False gives a zero context and no image encoder in memory.
    skip_init: starting value of the VAE skip-conv weights (0: the plain VAE at initialisation).
    ff_mult: hidden width of the MPI blocks' feed-forward, in multiples of the block width.
    max_key_tokens: the MPI blocks' keys are pooled to at most this many per set (None: the full block grid).
    key_mask: how a pooled condition key is masked, "coverage" or "any" (see `MPIAttention`).
    k_residual: K's embedding joins the residual stream ungated (False: only the attention's queries and keys).
    k_encoding: E(K), "log", "raw", "release" (interleaved, float16) or "interleaved" (float32); see `fourier_k`.
    k_gain: K scales the V_D features of `conv_in` (`any2bokeh.models.k_gain`).
    projection: Phi_M and Phi_A as "mlp" (Linear, SiLU, Linear) or "linear" (one layer, the release's).
    cond_tokens: the MPI blocks attend to the all-in-focus condition tokens (False: visual tokens only).
    ff_twice: the MPI block's feed-forward runs twice, after two norms, under one gate (the release's).
    temporal_context: the temporal blocks see "all" frames' CLIP tokens, or the "first" frame's (the release's).
    clip_resize: CLIP's input resize, "bicubic" (antialiased) or "gaussian" (the SVD pipeline's blur, then
        bicubic with align_corners, as the release runs it).
    clip_normalize: CLIP's input normalised with the feature extractor's mean and std (the release: not).
    training_size: [H, W] of the clips the model was last trained on (train.py records it); the model
        renderer works at its area unless `working_area` is set. None: not recorded (the paper's 576x1024).
    """

    n_planes: int = 4
    mpi_alpha: float = 1.0
    fps: float = 7
    motion_bucket_id: float = 127
    noise_aug_strength: float = 0.0
    timestep: float = 1.0
    use_image_encoder: bool = True
    skip_init: float = 0.0
    ff_mult: int = 2
    max_key_tokens: int | None = 576
    key_mask: str = "coverage"
    k_residual: bool = True
    k_encoding: str = "log"
    k_gain: bool = True
    projection: str = "mlp"
    cond_tokens: bool = True
    ff_twice: bool = False
    temporal_context: str = "all"
    clip_resize: str = "bicubic"
    clip_normalize: bool = True
    training_size: list[int] | None = None


#: the authors' released network (RELEASE.md §3-5): their MPI block with its all-zero key mask, fps 6 at inference
RELEASE_OPTIONS = {
    "fps": 6,
    "ff_mult": 4,
    "max_key_tokens": None,
    "k_residual": True,
    "k_encoding": "release",
    "k_gain": False,
    "projection": "linear",
    "cond_tokens": False,
    "ff_twice": True,
    "temporal_context": "first",
    "clip_resize": "gaussian",
    "clip_normalize": False,
    "training_size": [576, 1024],
}
