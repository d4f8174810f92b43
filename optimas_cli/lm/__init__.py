"""LM layer: one client for embedded GGUF models and API models, with cache and budgets."""

from .api import check_credentials
from .base import (
    BudgetExceeded,
    CacheUnreadable,
    CredentialsRejected,
    LMError,
    LMRequest,
    LMResponse,
    RunStopped,
)
from .client import LMClient, LMUsage
from .config import LMConfig

__all__ = [
    "BudgetExceeded",
    "CacheUnreadable",
    "CredentialsRejected",
    "LMClient",
    "LMConfig",
    "LMError",
    "LMRequest",
    "LMResponse",
    "LMUsage",
    "RunStopped",
    "check_credentials",
]
