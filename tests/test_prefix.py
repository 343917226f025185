"""The radix tree and the level-by-level KV-cache scheduler, on a numpy "model" that can see every mistake.

The fake model's cache holds each past token id and its position; its next-token logits are a function of the
real tokens and positions of the whole prompt. A wrong gather, a lost padding mask, a dropped or duplicated
token or a position slip changes the logits, so the tree path must equal running each prompt in full exactly."""
from __future__ import annotations

import numpy as np
import pytest

from edgeval.runtimes.base import BaseRuntime
from edgeval.runtimes.prefix import radix_tree, tree_next_token_logits, tree_token_count

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


@pytest.mark.parametrize("max_rows,max_tokens", [(32, 8192), (1, 8192), (3, 40)])
def test_tree_logits_equal_full_prompts_whatever_the_batching(max_rows, max_tokens):
    sequences = bbq_like(1)
    model = TreeModel()
    tree, computed = tree_next_token_logits(sequences, model._cached_step, [2], pad_id=0, max_rows=max_rows,
                                            max_tokens=max_tokens)
    np.testing.assert_allclose(tree, model.next_token_logits(sequences), rtol=0, atol=1e-6)
    assert computed == tree_token_count(radix_tree(sequences))
    assert all(rows <= max_rows for rows, _, _ in model.steps)


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

    prefix.radix_tree, prefix._gather_past = spy, gather_spy
    try:
        tree, _ = tree_next_token_logits(sequences, model._cached_step, [2], pad_id=0, max_rows=4)
    finally:
        prefix.radix_tree, prefix._gather_past = levels_of, gather
    np.testing.assert_allclose(tree, model.next_token_logits(sequences), rtol=0, atol=1e-6)
    assert mixed, "the held root ran in a batch with a past"
    assert all(node.present is None for node in kept if node.children)
