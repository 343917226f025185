"""The radix tree and the level-by-level KV-cache scheduler, on a numpy "model" that can see every mistake.

The fake model's cache holds each past token id and its position; its next-token logits are a function of the
real tokens and positions of the whole prompt. A wrong gather, a lost padding mask, a dropped or duplicated
token or a position slip changes the logits, so the tree path must equal running each prompt in full exactly."""
from __future__ import annotations

import numpy as np
import pytest

from edgeval.runtimes.base import BaseRuntime
from edgeval.runtimes.prefix import SPLICE_TOKENS, radix_tree, splice_short, tree_next_token_logits, tree_token_count

V = 7


def _signature(tokens: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Order- and position-sensitive logits of a token sequence."""
    out = np.zeros(V)
    for k, (tok, pos) in enumerate(zip(tokens, positions, strict=True)):
        out[(tok + k) % V] += np.sin(tok * 0.37 + pos * 1.31) + 0.01 * pos
    return out


class TreeModel(BaseRuntime):
    """Cache per token: (token id, position) in one array (batch, 2, seq) — sequence axis 2, as transformers."""

    name = "fake-kv"

    def __init__(self):
        self.tokenizer = type("T", (), {"pad_id": 0})()
        self.steps: list[tuple[int, int, int]] = []

    def kv_seq_axes(self):
        return [2]

    def next_token_logits(self, sequences):
        return np.stack([_signature(np.asarray(s), np.arange(len(s))) for s in sequences]).astype(np.float32)

    def _cached_step(self, input_ids, attention_mask, positions, past, keep):
        batch, seg = input_ids.shape
        width = attention_mask.shape[1] - seg
        self.steps.append((batch, seg, width))
        new = np.stack([input_ids, positions], axis=1).astype(np.float64)  # (batch, 2, seg)
        cache = new if past is None else np.concatenate([past[0], new], axis=2)
        assert cache.shape[2] == attention_mask.shape[1]
        logits = []
        for row in range(batch):
            real = attention_mask[row].astype(bool)
            tokens, pos = cache[row, 0, real].astype(int), cache[row, 1, real].astype(int)
            assert list(pos) == list(range(real.sum())), "positions must count the real tokens only"
            logits.append(_signature(tokens, pos))
        return np.asarray(logits, np.float32), ([cache] if keep else None)


def bbq_like(seed: int = 0) -> list[list[int]]:
    """System prefix → contexts (one a prefix of another) → questions → 3 option orders; plus odd cases: a
    sequence that is a prefix of others, a duplicate, and a sequence sharing nothing."""
    rng = np.random.default_rng(seed)
    system = list(rng.integers(1, 50, 6))
    out = []
    for _ in range(3):
        ambig = system + list(rng.integers(1, 50, rng.integers(3, 9)))
        for context in (ambig, ambig + list(rng.integers(1, 50, rng.integers(1, 6)))):
            for _ in range(2):
                question = context + list(rng.integers(1, 50, rng.integers(1, 4)))
                for _ in range(3):
                    out.append(question + list(rng.integers(1, 50, rng.integers(1, 5))))
    out += [system[:4], list(out[5]), [49, 48, 47]]
    return out


def test_radix_tree_paths_spell_every_sequence_once():
    sequences = bbq_like()
    levels = radix_tree(sequences)
    seen = []
    for level in levels:
        for node in level:
            for i in node.ends:
                path, cur = [], node
                while cur is not None:
                    path[:0] = cur.tokens
                    cur = cur.parent
                assert path == list(sequences[i])
                seen.append(i)
            assert node.tokens, "no empty segments"
            assert len({child.tokens[0] for child in node.children}) == len(node.children), "children diverge"
    assert sorted(seen) == list(range(len(sequences)))
    assert len(levels[0]) == 2  # the system prefix and the unrelated sequence
    # a token is computed once per distinct prefix: the tree's size is the number of distinct prefixes
    distinct = {tuple(s[:k]) for s in sequences for k in range(1, len(s) + 1)}
    assert tree_token_count(levels) == len(distinct) < sum(map(len, sequences))


@pytest.mark.parametrize("splice", [0, SPLICE_TOKENS, 1000])
@pytest.mark.parametrize("max_rows,max_tokens", [(32, 8192), (1, 8192), (3, 40)])
def test_tree_logits_equal_full_prompts_whatever_the_batching(max_rows, max_tokens, splice):
    sequences = bbq_like(1)
    model = TreeModel()
    tree, computed = tree_next_token_logits(sequences, model._cached_step, [2], pad_id=0, max_rows=max_rows,
                                            max_tokens=max_tokens, splice=splice)
    np.testing.assert_allclose(tree, model.next_token_logits(sequences), rtol=0, atol=1e-6)
    assert computed == tree_token_count(splice_short(radix_tree(sequences), splice))
    assert all(rows <= max_rows for rows, _, _ in model.steps)
    if splice == 0:
        assert computed == tree_token_count(radix_tree(sequences))


def test_splice_folds_short_inner_nodes_only():
    """A one-token node shared by two prompts is run twice instead of alone; a node a prompt ends at, and one
    whose segment would be repeated beyond the limit, stay."""
    sequences = [[1, 2, 3, 4], [1, 2, 3, 5],  # (1 2 3) -> 4 | 5
                 [1, 9, 7, 7], [1, 9, 8, 8],  # -> 9 -> (7 7) | (8 8): "9" folds at limit 1
                 [1, 6], [1, 6, 6]]           # "6" is where a prompt ends: stays
    levels = radix_tree(sequences)
    before = tree_token_count(levels)
    spliced = splice_short(radix_tree(sequences), limit=1)
    segments = {node.tokens for level in spliced for node in level}
    assert (9, 7, 7) in segments and (9, 8, 8) in segments and (9,) not in segments
    assert (6,) in segments
    assert tree_token_count(spliced) == before + 1  # "9" runs twice
    for level, nodes in enumerate(spliced):
        assert all(node.level == level and (node.parent is None) == (level == 0) for node in nodes)
    assert splice_short(radix_tree(sequences), limit=0) and tree_token_count(
        splice_short(radix_tree(sequences), limit=0)) == before
    # the shared root "1" feeds 4 children: repeating it costs 3 tokens, over the limit of 1
    assert [node.tokens for node in spliced[0]] == [(1,)]


def _cost(batch, widths):
    from edgeval.runtimes.prefix import CALL_COST, KEY_COST

    seg, past = max(len(n.tokens) for n in batch), max(widths[id(n)] for n in batch)
    return CALL_COST + len(batch) * (seg + KEY_COST * (past + seg))


@pytest.mark.parametrize("seed", range(12))
def test_batches_are_the_cheapest_contiguous_cut(seed):
    """The dynamic programme against every cut of the sorted nodes into contiguous batches (brute force on up to
    9 nodes): the least modelled cost, within the row and cell bounds, each node in one batch."""
    import itertools

    from edgeval.runtimes.prefix import Node, _batches

    rng = np.random.default_rng(seed)
    parent = Node((1,), None, 0)
    parent.mask = np.ones(int(rng.integers(0, 40)), np.int64)
    nodes = [Node(tuple(range(int(rng.integers(1, 30)))), parent if rng.random() < 0.7 else None, 1)
             for _ in range(int(rng.integers(1, 10)))]
    widths = {id(n): 0 if n.parent is None else int(n.parent.mask.sum()) for n in nodes}
    max_rows, max_tokens = int(rng.integers(1, 6)), int(rng.integers(40, 200))
    got = _batches(nodes, max_rows, max_tokens)
    assert sorted(id(n) for b in got for n in b) == sorted(map(id, nodes))

    def fits(batch):
        return len(batch) == 1 or (len(batch) <= max_rows and len(batch) * (
            max(len(n.tokens) for n in batch) + max(widths[id(n)] for n in batch)) <= max_tokens)

    assert all(fits(b) for b in got)
    order = sorted(nodes, key=lambda n: (len(n.tokens), widths[id(n)]))
    best = min(sum(_cost(order[a:b], widths) for a, b in itertools.pairwise((0, *cuts, len(order))))
               for k in range(len(order)) for cuts in itertools.combinations(range(1, len(order)), k)
               if all(fits(order[a:b]) for a, b in itertools.pairwise((0, *cuts, len(order)))))
    assert sum(_cost(b, widths) for b in got) == pytest.approx(best)


def test_next_token_logits_many_windows_and_falls_back_without_cache():
    sequences = bbq_like(2) + bbq_like(3)
    model = TreeModel()
    done = []
    many = model.next_token_logits_many(sequences, max_rows=8, window=10, progress=done.append)
    np.testing.assert_allclose(many, model.next_token_logits(sequences), atol=1e-6)
    assert sum(done) == len(sequences) and max(done) <= 10
    assert model.tokens_requested == sum(map(len, sequences)) > model.tokens_computed

    plain = TreeModel()
    plain.kv_seq_axes = lambda: None  # a runtime without a KV cache: every prompt in full, same answers
    np.testing.assert_allclose(plain.next_token_logits_many(sequences, max_rows=8), many, atol=1e-6)
    assert plain.tokens_computed == plain.tokens_requested and not plain.steps


def test_empty_sequence_is_refused():
    with pytest.raises(ValueError, match="no tokens"):
        TreeModel().next_token_logits_many([[1, 2], []])


def test_waves_mix_levels_and_free_every_cache():
    """A root that sorts after the first batch waits and runs beside deeper nodes (its row is all padding in the
    gathered past); logits still equal full prompts, and no node keeps a cache once its children have run."""
    import edgeval.runtimes.prefix as prefix

    sequences = bbq_like(4) + [[40 + k] + [k + 1] * 8 for k in range(3)]  # 5 roots: 4 run, the 5th waits
    model = TreeModel()
    kept = []
    levels_of = prefix.radix_tree

    def spy(seqs):
        levels = levels_of(seqs)
        kept.extend(node for level in levels for node in level)
        return levels

    mixed = []
    gather = prefix._gather_past

    def gather_spy(nodes, seq_axes):
        past, mask = gather(nodes, seq_axes)
        mixed.extend(r for r, n in enumerate(nodes) if n.parent is None and not mask[r].any())
        return past, mask

    def chunks(nodes, max_rows, max_tokens):  # rows in sorted order, max_rows at a time: the cut is not at issue
        order = sorted(nodes, key=lambda n: len(n.tokens))
        return [order[k:k + max_rows] for k in range(0, len(order), max_rows)]

    cut = prefix._batches
    prefix.radix_tree, prefix._gather_past, prefix._batches = spy, gather_spy, chunks
    try:
        tree, _ = tree_next_token_logits(sequences, model._cached_step, [2], pad_id=0, max_rows=4, splice=0)
    finally:
        prefix.radix_tree, prefix._gather_past, prefix._batches = levels_of, gather, cut
    np.testing.assert_allclose(tree, model.next_token_logits(sequences), rtol=0, atol=1e-6)
    assert mixed, "the held root ran in a batch with a past"
    assert all(node.present is None for node in kept if node.children)
