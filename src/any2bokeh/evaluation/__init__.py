"""The evaluation protocol of §4 (Tables 1 and 2, Fig. 6): `evaluate(cfg)` and its pieces.

The metrics themselves live in `any2bokeh.metrics`; this package runs a method over the test
sets, keeps per-video records, and writes the tables and the plot.
"""

from any2bokeh.evaluation.run import evaluate, evaluation_jobs

__all__ = ["evaluate", "evaluation_jobs"]
