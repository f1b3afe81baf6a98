"""Any-to-Bokeh: video refocusing with a one-step, MPI-conditioned video diffusion model."""

from any2bokeh import renamed

__version__ = "0.1.0"

renamed.install()
