"""BBQ bias validator (Parrish et al., 2022): data, prompts, scoring, metrics, paired comparison, gate."""
from .validator import BBQValidator

__all__ = ["BBQValidator"]
