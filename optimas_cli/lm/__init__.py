"""LM layer: one client for embedded GGUF models and API models, with cache and budgets."""

from .api import check_credentials
from .base import BudgetExceeded, LMError, LMRequest, LMResponse
from .client import LMClient, LMUsage
from .config import LMConfig

__all__ = [
    "BudgetExceeded",
    "LMClient",
    "LMConfig",
    "LMError",
    "LMRequest",
    "LMResponse",
    "LMUsage",
    "check_credentials",
]
