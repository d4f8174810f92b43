"""BigCodeBench (Zhuo et al., 2024): write a Python function that uses libraries, from a
task in prose; scored by the task's hidden unittest module, run in the sandbox."""

from systems.bigcodebench.data import load
from systems.bigcodebench.metric import metric, partial_metric

__all__ = ["load", "metric", "partial_metric"]
