"""BBQ bias validator (Parrish et al., 2022): data, prompts, scoring, metrics, paired comparison, gate.

Submodules are imported on demand, so that e.g. the metrics can be used without the data loader.
"""


def __getattr__(name: str):
    if name == "BBQValidator":
        from .validator import BBQValidator

        return BBQValidator
    raise AttributeError(name)
