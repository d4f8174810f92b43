"""HotpotQA multi-hop question answering (Yang et al., 2018), distractor setting."""

from systems.hotpotqa.data import load
from systems.hotpotqa.metric import metric

__all__ = ["load", "metric"]
