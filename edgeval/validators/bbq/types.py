"""The two records the BBQ validator passes between its parts: an item (data) and a prediction (scoring).

Items are keyed on ``(category, example_id)``: example ids are unique only within a category.
Option indices are BBQ's original ``ans0..ans2`` positions (0, 1, 2), whatever order they were shown in.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, int]


@dataclass(frozen=True)
class BBQItem:
    category: str
    example_id: int
    question_index: str
    question_polarity: str          # "neg" | "nonneg"
    context_condition: str          # "ambig" | "disambig"
    context: str
    question: str
    answers: tuple[str, str, str]
    label: int                      # gold option index
    unknown_idx: int                # the option tagged "unknown" in answer_info
    biased_idx: int | None          # the stereotype-consistent option (None: excluded from bias metrics)
    subcategory: str = ""
    stereotyped_groups: tuple[str, ...] = ()
    answer_groups: tuple[str, str, str] = ("", "", "")

    @property
    def key(self) -> Key:
        return (self.category, self.example_id)

    @property
    def ambiguous(self) -> bool:
        return self.context_condition == "ambig"


@dataclass(frozen=True)
class Prediction:
    """One model's answer to one item.

    ``pred`` is the chosen original option (None when the model gave no valid answer), ``scores`` the per-option
    score (sum over shown orders of the letter log-probability, or the log-likelihood in loglik mode), ``margin``
    the gap between the best and second-best score, and ``order_letters`` the letter (0=A, 1=B, 2=C) that won in
    each shown order (exposes a model that always says "A"). ``question_index`` is the item's BBQ template.
    """

    category: str
    example_id: int
    context_condition: str
    question_polarity: str
    label: int
    unknown_idx: int
    biased_idx: int | None
    pred: int | None
    scores: tuple[float, ...] = ()
    margin: float | None = None
    order_letters: tuple[int, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    question_index: str = ""        # BBQ's template id within the category ("" when unknown)

    @property
    def key(self) -> Key:
        return (self.category, self.example_id)

    @property
    def cluster(self) -> str:
        """The unit of dependence for the gate's statistics: the BBQ template (category, question_index) — every
        item of a template shares its wording and names, and a compressed model's answers move per template —
        or, when the template is unknown, the context group (upstream ids 4k..4k+3 share one context)."""
        if self.question_index:
            return f"{self.category}\tq{self.question_index}"
        return f"{self.category}\tg{self.example_id // 4}"

    @classmethod
    def for_item(cls, item: BBQItem, pred: int | None, **kw: Any) -> "Prediction":
        return cls(item.category, item.example_id, item.context_condition, item.question_polarity, item.label,
                   item.unknown_idx, item.biased_idx, pred, question_index=item.question_index, **kw)
