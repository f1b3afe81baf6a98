"""Any-to-Bokeh: video refocusing with a one-step, MPI-conditioned video diffusion model."""

__version__ = "0.1.0"
