"""Second bias lenses: CrowS-Pairs and StereoSet (intersentence), written against :mod:`edgeval.plugin` only.

Both score sentences by log-likelihood on any runtime and gate on the paired rise of "% stereotype preferred"
with the shared rule of :mod:`edgeval.decision` (the one BBQ uses). See ``docs/lenses.md``.
"""
