"""BBQ bias validator (Parrish et al., 2022): data, prompts, scoring, metrics, paired comparison, gate.

Submodules are imported on demand, so that e.g. the metrics can be used without the data loader.
The names below are the package's public surface for other validators: parity checks that an export answers
BBQ's letter prompts as its source model does, so it builds them with :func:`encode_letter_prompt`.
"""
from importlib import import_module

_PUBLIC = {"BBQValidator": ".validator", "BBQItem": ".types", "encode_letter_prompt": ".prompts",
           "prompt_format": ".prompts"}


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name], __name__), name)
    raise AttributeError(name)
