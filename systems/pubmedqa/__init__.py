"""PubMedQA (Jin et al., 2019): answer a biomedical research question yes, no or maybe
from the abstract that studied it (PQA-L, reasoning-required setting)."""

from systems.pubmedqa.data import load
from systems.pubmedqa.metric import extract_label, metric

__all__ = ["extract_label", "load", "metric"]
