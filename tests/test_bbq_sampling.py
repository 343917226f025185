"""BBQ sampling: balance over category x condition x polarity, whole groups, determinism, fingerprint."""
from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter

import pytest
from bbq_fixture import FIXTURE_DIR as FIXTURES  # noqa: E402

from edgeval.validators.bbq import data, sampling
from edgeval.validators.bbq.types import BBQItem


@pytest.fixture(scope="module")
def items() -> tuple[BBQItem, ...]:
    # 56 usable items: Age 6 groups, Race_x_gender 4, Religion 4 (two groups excluded)
    return data.load_bbq(FIXTURES).items


def cells(sample: tuple[BBQItem, ...]) -> Counter:
    return Counter((i.category, i.context_condition, i.question_polarity) for i in sample)


def test_no_limit_or_large_limit_returns_everything_sorted(items: tuple[BBQItem, ...]) -> None:
    everything = tuple(sorted(items, key=lambda i: i.key))
    assert sampling.stratified_sample(list(reversed(items)), None, 0) == everything
    assert sampling.stratified_sample(items, len(items), 0) == everything
    assert sampling.stratified_sample(items, 10_000, 3) == everything


def test_balanced_over_category_condition_polarity(items: tuple[BBQItem, ...]) -> None:
    sample = sampling.stratified_sample(items, 24, 0)
    assert len(sample) == 24
    assert len(cells(sample)) == 12 and set(cells(sample).values()) == {2}


def test_whole_groups_only(items: tuple[BBQItem, ...]) -> None:
    for seed in range(5):
        sample = sampling.stratified_sample(items, 12, seed)
        blocks = Counter((i.category, i.example_id // 4) for i in sample)
        assert set(blocks.values()) == {4}          # both questions of both contexts of each drawn instance


def test_deterministic_and_seed_dependent(items: tuple[BBQItem, ...]) -> None:
    a = sampling.stratified_sample(items, 24, 7)
    shuffled = list(items)
    random.Random(1).shuffle(shuffled)
    assert sampling.stratified_sample(shuffled, 24, 7) == a          # input order does not matter
    assert sampling.stratified_sample(items, 24, "7") == a           # the seed's text is what counts
    assert len({tuple(i.key for i in sampling.stratified_sample(items, 24, s)) for s in range(10)}) > 1


@pytest.mark.parametrize("limit, expected", [
    (1, {"Age": 4}),                               # one group, to the first category in name order
    (10, {"Age": 4, "Race_x_gender": 4, "Religion": 4}),   # round(10 / 4) = 3 groups
    (26, {"Age": 12, "Race_x_gender": 8, "Religion": 8}),  # 7 groups: 3 + 2 + 2
    (52, {"Age": 20, "Race_x_gender": 16, "Religion": 16}),  # 13: 5 + 4 + 4
    (55, {"Age": 24, "Race_x_gender": 16, "Religion": 16}),  # 14: small categories full, rest to Age
])
def test_group_rounding_and_redistribution(items: tuple[BBQItem, ...], limit: int, expected: dict) -> None:
    sample = sampling.stratified_sample(items, limit, 0)
    assert dict(Counter(i.category for i in sample)) == expected


def test_zero_and_negative_limits(items: tuple[BBQItem, ...]) -> None:
    assert sampling.stratified_sample(items, 0, 0) == ()
    with pytest.raises(ValueError, match="limit must be >= 0"):
        sampling.stratified_sample(items, -1, 0)


def test_grouping_uses_content_not_ids(items: tuple[BBQItem, ...]) -> None:
    ids = list(range(1000, 1000 + len(items)))
    random.Random(0).shuffle(ids)
    renumbered = [dataclasses.replace(item, example_id=eid) for item, eid in zip(items, ids, strict=True)]
    groups = sampling.group_items(renumbered)
    assert sum(len(g) for g in groups.values()) == 14
    for group in (g for gs in groups.values() for g in gs):
        assert {(m.context_condition, m.question_polarity) for m in group} == {
            ("ambig", "neg"), ("ambig", "nonneg"), ("disambig", "neg"), ("disambig", "nonneg")}
        assert len({m.question_index for m in group}) == 1


def test_identical_instances_split_back_into_blocks(items: tuple[BBQItem, ...]) -> None:
    age = [i for i in items if i.category == "Age" and i.example_id < 4]
    twin = [dataclasses.replace(i, example_id=i.example_id + 100) for i in age]
    groups = sampling.group_items(age + twin)["Age"]
    assert [[m.example_id for m in g] for g in groups] == [[0, 1, 2, 3], [100, 101, 102, 103]]


def test_incomplete_groups_drawn_last(items: tuple[BBQItem, ...]) -> None:
    partial = [i for i in items if not (i.category == "Age" and i.example_id in (1, 5, 9, 13, 17))]
    sample = sampling.stratified_sample([i for i in partial if i.category == "Age"], 4, 0)
    assert [i.example_id // 4 for i in sample] == [5] * 4            # the only complete Age group left


def test_fingerprint(items: tuple[BBQItem, ...]) -> None:
    sample = sampling.stratified_sample(items, 24, 0)
    fp = sampling.sample_fingerprint(sample, 0)
    assert re.fullmatch(r"[0-9a-f]{64}", fp)
    assert sampling.sample_fingerprint(list(reversed(sample)), 0) == fp
    assert sampling.sample_fingerprint([i.key for i in sample], 0) == fp
    assert sampling.sample_fingerprint(sample, 1) != fp
    assert sampling.sample_fingerprint(sample[4:], 0) != fp
