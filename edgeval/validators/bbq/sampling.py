"""Stratified, pair-preserving sampling of BBQ items, and a fingerprint of the sample for the report.

BBQ is built in *groups* of four: one template instance gives an ambiguous and a disambiguated context, each
asked as a ``neg`` and a ``nonneg`` question (upstream: four consecutive example ids, ambig-neg, disambig-neg,
ambig-nonneg, disambig-nonneg; the disambiguated context is the ambiguous one plus a sentence). Sampling draws
whole groups, so both questions of every context are kept together and each group adds one item to each of
the four context_condition x question_polarity cells of its category.

Groups are found from content, not ids: items of the same category, ``question_index`` and answer set whose
context is, or starts with, the same ambiguous context. Template instances with identical ambiguous contexts
(5 pairs in Disability_status, its version a/b variants) fall into one such group; it is split back into
blocks of four consecutive example ids when every block is complete, as upstream's are.
"""
from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from typing import Iterable, Sequence

from .types import BBQItem, Key

GROUP_SIZE = 4
_CELLS = frozenset({("ambig", "neg"), ("ambig", "nonneg"), ("disambig", "neg"), ("disambig", "nonneg")})

Group = tuple[BBQItem, ...]


def _bucket(item: BBQItem) -> tuple[str, str, tuple[str, ...]]:
    return item.category, item.question_index, tuple(sorted(item.answers))


def group_items(items: Iterable[BBQItem]) -> dict[str, list[Group]]:
    """Items grouped into template instances (see the module docstring), per category, in example_id order."""
    buckets: dict[tuple[str, str, tuple[str, ...]], list[BBQItem]] = defaultdict(list)
    for item in items:
        buckets[_bucket(item)].append(item)
    groups: dict[tuple[str, ...], list[BBQItem]] = defaultdict(list)
    for bucket, members in buckets.items():
        stems = sorted({m.context for m in members if m.ambiguous}, key=len, reverse=True)
        for m in members:
            stem = m.context if m.ambiguous else next((s for s in stems if m.context.startswith(s)), m.context)
            groups[(*bucket[:2], *bucket[2], stem)].append(m)
    out: dict[str, list[Group]] = defaultdict(list)
    for members in groups.values():
        members.sort(key=lambda m: m.example_id)
        out[members[0].category].extend(_split_merged(tuple(members)))
    for cat_groups in out.values():
        cat_groups.sort(key=lambda g: g[0].example_id)
    return dict(out)


def _complete(group: Group) -> bool:
    cells = [(m.context_condition, m.question_polarity) for m in group]
    return set(cells) == _CELLS and all(cells.count(c) == cells.count(cells[0]) for c in _CELLS)


def _split_merged(group: Group) -> list[Group]:
    """A group of more than four items as blocks of four consecutive example ids, if each block is complete."""
    if len(group) <= GROUP_SIZE:
        return [group]
    blocks: dict[int, list[BBQItem]] = defaultdict(list)
    for m in group:
        blocks[m.example_id // GROUP_SIZE].append(m)
    parts = [tuple(b) for b in blocks.values()]
    return parts if all(len(b) == GROUP_SIZE and _complete(b) for b in parts) else [group]


def _quotas(wanted: int, capacity: dict[str, int]) -> dict[str, int]:
    """Split ``wanted`` groups equally over categories (extra ones to the first in name order), capped by
    ``capacity``; what a small category cannot take goes to the others."""
    quota = dict.fromkeys(capacity, 0)
    while wanted > 0:
        open_cats = sorted(c for c in capacity if quota[c] < capacity[c])
        if not open_cats:
            break
        share, extra = divmod(wanted, len(open_cats))
        for i, cat in enumerate(open_cats):
            take = min(share + (i < extra), capacity[cat] - quota[cat])
            quota[cat] += take
            wanted -= take
    return quota


def _shuffled(groups: list[Group], seed: int | str, category: str) -> list[Group]:
    """Complete groups first, then the rest; each part in a seeded random order."""
    rng = random.Random(f"edgeval-bbq|{seed}|{category}")
    full = [g for g in groups if _complete(g)]
    partial = [g for g in groups if not _complete(g)]
    rng.shuffle(full)
    rng.shuffle(partial)
    return full + partial


def stratified_sample(items: Sequence[BBQItem], limit: int | None, seed: int | str = 0) -> tuple[BBQItem, ...]:
    """About ``limit`` items, balanced over category x context_condition x question_polarity, whole groups only.

    ``limit=None`` (or a limit of at least ``len(items)``) returns every item. Otherwise the sample is
    ``round(limit / 4)`` groups (at least one), split equally over the categories (the remainder to the first
    categories in name order; a category with too few groups gives all it has and the rest go to the
    others), each category's groups drawn in a random order fixed by ``seed`` and the category name. So the
    number drawn is a multiple of 4 within 2 of ``limit`` when groups are complete and plentiful; it is smaller
    when the data runs out, and a limit below 4 x (number of categories) cannot cover every category. Report
    ``len(result)``, not ``limit``. The result is sorted by ``(category, example_id)`` and deterministic for a
    given seed and item set.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    if limit is None or limit >= len(items):
        return tuple(sorted(items, key=lambda i: i.key))
    if limit == 0:
        return ()
    by_cat = group_items(items)
    quota = _quotas(max(1, int(limit / GROUP_SIZE + 0.5)), {c: len(g) for c, g in by_cat.items()})
    chosen = [m for cat, groups in by_cat.items() for g in _shuffled(groups, seed, cat)[:quota[cat]] for m in g]
    return tuple(sorted(chosen, key=lambda i: i.key))


def sample_fingerprint(items: Iterable[BBQItem | Key], seed: int | str) -> str:
    """sha256 (hex) of the sample's sorted ``(category, example_id)`` keys and the seed; order-independent."""
    keys = sorted(i.key if isinstance(i, BBQItem) else (str(i[0]), int(i[1])) for i in items)
    digest = hashlib.sha256()
    for cat, eid in keys:
        digest.update(f"{cat}\t{eid}\n".encode())
    digest.update(f"seed\t{seed}\n".encode())
    return digest.hexdigest()
