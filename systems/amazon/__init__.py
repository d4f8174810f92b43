"""Amazon next-item selection (KDD Cup 2024 session data, as in the Optimas paper): from the
products a shopper viewed, pick which of four candidates they view next."""

from systems.amazon.data import load
from systems.amazon.metric import extract_choice, metric

__all__ = ["extract_choice", "load", "metric"]
