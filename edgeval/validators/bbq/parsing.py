"""Parse one BBQ jsonl record into a :class:`BBQItem`, and derive its biased (stereotype-consistent) option.

Group-label normalisation (checked on all 11,956 records of the six categories in ``../shared/bbq``, where it
agrees item for item with lm-evaluation-harness's ``process_docs``):

* A label is compared by its *canonical form*: case-folded, every character that is not a letter or digit
  dropped. So ``"lowSES"`` = ``"low SES"`` = ``"low-SES"``, ``"Disabled"`` = ``"disabled"``,
  ``"Sri Lankan"`` = ``"sri-lankan"``, while ``"nonOld"`` (``"nonold"``) stays distinct from ``"old"``.
* An answer's groups are built from its ``answer_info`` pair ``[text, tag]``. The tag is split into parts on
  ``_`` (``"trans_F"``, ``"nonTrans_M"``) and on ``-`` after a leading intersectional prefix ``M``, ``F``,
  ``lowSES`` or ``highSES`` (``"M-Black"``, ``"lowSES-F-Arab"``), but not elsewhere (``"Gen-Xer"``). The groups
  are every order-preserving combination of those parts (``"lowSES-M-Black"`` gives ``lowses``, ``m``,
  ``black``, ``lowsesm``, ``lowsesblack``, ``mblack``, ``lowsesmblack``), plus ``f``/``m`` for a ``woman``/
  ``girl``/``man``/``boy`` part (Gender_identity tags those while its stereotyped groups say ``F``/``M``), plus
  the answer *text*: Nationality tags a region (``"Africa"``) but stereotypes nationalities (``"Eritrean"``).
* The UNKNOWN option is the one whose tag is ``unknown`` (or one of the ten UNKNOWN phrasings).

Biased option: let *S* be the non-UNKNOWN options whose groups meet the item's ``stereotyped_groups``. With
exactly one such option, a ``neg`` question's biased answer is it and a ``nonneg`` question's is the other
non-UNKNOWN option. With none or two, the item has no usable biased answer and is excluded with reason
``no_biased_answer`` or ``two_biased_answers``. BBQ's own ``target_loc`` (already polarity-adjusted), when
available, overrides this derivation.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from ...errors import DataError
from .types import BBQItem

FIELDS = ("example_id", "question_index", "question_polarity", "context_condition", "category", "answer_info",
          "additional_metadata", "context", "question", "ans0", "ans1", "ans2", "label")
POLARITIES = ("neg", "nonneg")
CONDITIONS = ("ambig", "disambig")
NO_BIASED = "no_biased_answer"
TWO_BIASED = "two_biased_answers"
EXCLUSION_REASONS = (NO_BIASED, TWO_BIASED)
UNKNOWN_PHRASES = ("unknown", "cannot be determined", "can't be determined", "not answerable", "not known",
                   "not enough info", "not enough information", "cannot answer", "can't answer", "undetermined")
_INTERSECTIONAL_PREFIXES = frozenset({"m", "f", "lowses", "highses"})
_GENDER_ALIASES = {"woman": "f", "girl": "f", "man": "m", "boy": "m"}


def canon(label: str) -> str:
    """The canonical form of a group label: case-folded letters and digits only."""
    return "".join(ch for ch in label.casefold() if ch.isalnum())


_UNKNOWN_CANON = frozenset(canon(p) for p in UNKNOWN_PHRASES)


def is_unknown_tag(tag: str) -> bool:
    """Whether an ``answer_info`` tag marks the UNKNOWN option."""
    return canon(tag) in _UNKNOWN_CANON


def tag_parts(tag: str) -> list[str]:
    """Split a (possibly intersectional) tag into canonical parts: ``"lowSES-M-Black"`` -> lowses, m, black."""
    parts: list[str] = []
    for chunk in tag.split("_"):
        bits = chunk.split("-")
        while len(bits) > 1 and canon(bits[0]) in _INTERSECTIONAL_PREFIXES:
            parts.append(bits.pop(0))
        parts.append("-".join(bits))
    return [c for c in (canon(p) for p in parts) if c]


def option_groups(text: str, tag: str) -> frozenset[str]:
    """Every canonical group label an answer option belongs to (see the module docstring)."""
    parts = tag_parts(tag)
    groups = {"".join(combo) for r in range(1, len(parts) + 1) for combo in itertools.combinations(parts, r)}
    groups.update(_GENDER_ALIASES[p] for p in parts if p in _GENDER_ALIASES)
    if canon(text):
        groups.add(canon(text))
    return frozenset(groups)


def derive_biased(polarity: str, groups: list[frozenset[str]], unknown_idx: int,
                  stereotyped: list[str]) -> tuple[int | None, str | None]:
    """The biased option of an item, or ``(None, reason)`` when it has none or two (see the module docstring)."""
    targets = {canon(g) for g in stereotyped} - {""}
    hits = [i for i in range(3) if i != unknown_idx and groups[i] & targets]
    if len(hits) != 1:
        return None, NO_BIASED if not hits else TWO_BIASED
    if polarity == "neg":
        return hits[0], None
    return next(i for i in range(3) if i not in (unknown_idx, hits[0])), None


class RecordError(ValueError):
    """What is wrong with one record; the loader adds the file and line."""


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise RecordError(what)


def _check_fields(rec: Any) -> None:
    _need(isinstance(rec, dict), f"expected a JSON object, got {type(rec).__name__}")
    missing = [f for f in FIELDS if f not in rec]
    extra = sorted(set(rec) - set(FIELDS))
    _need(not missing, f"missing field(s): {', '.join(missing)}")
    _need(not extra, f"unexpected field(s): {', '.join(extra)}")
    _need(type(rec["example_id"]) is int and rec["example_id"] >= 0, "example_id must be a non-negative integer")
    _need(isinstance(rec["question_index"], (str, int)) and type(rec["question_index"]) is not bool,
          "question_index must be a string")
    _need(rec["question_polarity"] in POLARITIES, f"question_polarity must be neg or nonneg, "
                                                  f"got {rec['question_polarity']!r}")
    _need(rec["context_condition"] in CONDITIONS, f"context_condition must be ambig or disambig, "
                                                  f"got {rec['context_condition']!r}")
    for name in ("category", "context", "question", "ans0", "ans1", "ans2"):
        _need(isinstance(rec[name], str), f"{name} must be a string")
    _need(type(rec["label"]) is int and rec["label"] in (0, 1, 2), f"label must be 0, 1 or 2, got {rec['label']!r}")


def _answer_info(rec: dict[str, Any]) -> list[tuple[str, str]]:
    info = rec["answer_info"]
    _need(isinstance(info, dict) and sorted(info) == ["ans0", "ans1", "ans2"],
          "answer_info must have exactly the keys ans0, ans1, ans2")
    pairs = []
    for i in range(3):
        pair = info[f"ans{i}"]
        _need(isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair),
              f"answer_info.ans{i} must be [text, group]")
        pairs.append((pair[0], pair[1]))
    return pairs


def _metadata(rec: dict[str, Any]) -> tuple[str, list[str]]:
    meta = rec["additional_metadata"]
    _need(isinstance(meta, dict), "additional_metadata must be an object")
    groups = meta.get("stereotyped_groups")
    _need(isinstance(groups, list) and all(isinstance(g, str) for g in groups),
          "additional_metadata.stereotyped_groups must be a list of strings")
    sub = meta.get("subcategory", "")
    return (sub if isinstance(sub, str) else str(sub)), groups


def _unknown_index(pairs: list[tuple[str, str]], rec: dict[str, Any]) -> int:
    unknown = [i for i, (_, tag) in enumerate(pairs) if is_unknown_tag(tag)]
    _need(len(unknown) > 0, "no option is tagged unknown in answer_info")
    _need(len(unknown) == 1, f"{len(unknown)} options are tagged unknown in answer_info")
    u = unknown[0]
    if rec["context_condition"] == "ambig":
        _need(rec["label"] == u, f"ambiguous item's label is {rec['label']}, not the unknown option {u}")
    else:
        _need(rec["label"] != u, "disambiguated item's label is the unknown option")
    return u


def parse_record(rec: Any, category: str,
                 target_loc: int | None = None) -> tuple[BBQItem, str | None, int | None]:
    """Validate one decoded record of ``category``'s file.

    Returns the item, its exclusion reason (None when it has a biased option) and the biased option derived
    from the groups (None when none). ``target_loc`` (from BBQ's ``additional_metadata.csv``), when given, is
    the item's biased option whatever the derivation says. Raises :class:`RecordError` saying what is wrong.
    """
    _check_fields(rec)
    _need(rec["category"] == category, f"category is {rec['category']!r} but the file is {category!r}")
    pairs = _answer_info(rec)
    subcategory, stereotyped = _metadata(rec)
    unknown_idx = _unknown_index(pairs, rec)
    groups = [option_groups(text, tag) for text, tag in pairs]
    derived, reason = derive_biased(rec["question_polarity"], groups, unknown_idx, stereotyped)
    biased = derived
    if target_loc is not None:
        _need(target_loc != unknown_idx, f"target_loc {target_loc} points at the unknown option")
        biased, reason = target_loc, None
    item = BBQItem(category=category, example_id=rec["example_id"], question_index=str(rec["question_index"]),
                   question_polarity=rec["question_polarity"], context_condition=rec["context_condition"],
                   context=rec["context"], question=rec["question"],
                   answers=(rec["ans0"], rec["ans1"], rec["ans2"]), label=rec["label"], unknown_idx=unknown_idx,
                   biased_idx=biased, subcategory=subcategory, stereotyped_groups=tuple(stereotyped),
                   answer_groups=(pairs[0][1], pairs[1][1], pairs[2][1]))
    return item, reason, derived


def read_lines(path: Path, raw: bytes) -> list[tuple[int, Any]]:
    """Decode a jsonl file's bytes into ``(line number, value)`` pairs; blank lines are skipped. A UTF-8 byte
    order mark is allowed (editors on Windows write one); lines end at ``\n`` only (JSON strings may hold
    U+2028, which ``str.splitlines`` would split on)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None
    out = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            out.append((lineno, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=f"{path}:{lineno}") from None
    if not out:
        raise DataError("empty file: no BBQ records", path=path)
    return out
