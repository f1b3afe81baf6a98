"""The Any-to-Bokeh network: conditioning signals, MPI attention and the MPI-conditioned SVD UNet."""

from .bokeh_unet import BokehUNet
from .conditioning import fourier_k, mpi_regions, mpi_thresholds, vd_image, vd_map
from .mpi_attention import MPIAttention, MPIInputs, MPITransformerBlock

__all__ = [
    "BokehUNet",
    "MPIAttention",
    "MPIInputs",
    "MPITransformerBlock",
    "fourier_k",
    "mpi_regions",
    "mpi_thresholds",
    "vd_image",
    "vd_map",
]

from .any_to_bokeh import AnyToBokeh, AnyToBokehOptions, AnyToBokehOutput, EncodedFrames
from .loading import load_svd_components
from .tiny import save_tiny_svd, tiny_svd_components
from .vae import SkipVAE, SkipVAEEncoding

__all__ += [
    "AnyToBokeh",
    "AnyToBokehOptions",
    "AnyToBokehOutput",
    "EncodedFrames",
    "SkipVAE",
    "SkipVAEEncoding",
    "load_svd_components",
    "save_tiny_svd",
    "tiny_svd_components",
]
