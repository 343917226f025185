"""Next-token logits for many prompts that share prefixes, each shared prefix computed once (KV cache).

BBQ prompts share a lot: every prompt starts with the same system turn and instruction, the four questions of a
context group share its context (the ambiguous context is a prefix of the disambiguated one), and the three option
orders of a question share everything up to the options. :func:`radix_tree` turns a window of token sequences into
a radix tree (a node per maximal shared segment); :func:`tree_next_token_logits` runs the tree in waves: the nodes
whose parent has run are batched (sorted by segment length, left-padded, levels mixed), each fed the key/value
cache of its parent row, and the next-token logits are read at the nodes where a prompt ends.

A runtime supports this by implementing ``_cached_step`` (see :class:`edgeval.runtimes.base.BaseRuntime`): one
forward pass of left-padded new tokens after a past given as per-layer arrays ``(batch, heads, past, head_dim)``,
returning the last position's logits and the "present" arrays (past + new). Padding inside the past is masked, so
rows with different past lengths share a batch; positions come from the mask (``cumsum - 1``), so they are the ones
the full prompt would get. The logits equal those of running every prompt in full (tested to 1e-5).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .base import position_ids


@dataclass(eq=False)
class Node:
    """A maximal segment shared by the prompts below it."""

    tokens: tuple[int, ...]
    parent: "Node | None"
    level: int
    ends: list[int] = field(default_factory=list)      # prompts (window indices) that end with this node
    children: list["Node"] = field(default_factory=list)
    # filled while running: the node's row in its batch's present arrays, and that row's mask
    present: list[np.ndarray] | None = None
    row: int = -1
    mask: np.ndarray | None = None
    pending: int = 0  # children not run yet

    def ran_mask(self) -> np.ndarray:
        """The mask of a node that has run (its children run after it)."""
        if self.mask is None:
            raise RuntimeError(f"a level-{self.level} node's mask was read before it ran")
        return self.mask

    def kept(self) -> list[np.ndarray]:
        """The present arrays of a node that has run and kept its cache."""
        if self.present is None:
            raise RuntimeError(f"a level-{self.level} node's cache was read before it ran")
        return self.present


def radix_tree(sequences: Sequence[Sequence[int]]) -> list[list[Node]]:
    """The radix tree of ``sequences`` (each non-empty), as its levels: ``levels[0]`` the roots (several when the
    sequences do not all start alike). Every sequence ends at exactly one node (its index is in ``node.ends``)."""
    levels: list[list[Node]] = []
    stack: list[tuple[list[int], int, Node | None, int]] = [(list(range(len(sequences))), 0, None, 0)]
    while stack:
        members, start, parent, level = stack.pop()
        by_token: dict[int, list[int]] = defaultdict(list)
        for i in members:
            by_token[sequences[i][start]].append(i)
        for group in by_token.values():
            end = start + 1
            while True:
                alive = [i for i in group if len(sequences[i]) > end]
                if len(alive) != len(group) or len({sequences[i][end] for i in group}) != 1:
                    break
                end += 1
            node = Node(tuple(sequences[group[0]][start:end]), parent, level)
            node.ends = [i for i in group if len(sequences[i]) == end]
            rest = [i for i in group if len(sequences[i]) > end]
            if parent is not None:
                parent.children.append(node)
            while len(levels) <= level:
                levels.append([])
            levels[level].append(node)
            if rest:
                stack.append((rest, end, node, level + 1))
    return levels


def splice_short(levels: list[list[Node]], limit: int) -> list[list[Node]]:
    """The tree with short inner nodes folded into their children: a node that no prompt ends at, whose
    segment would be run again by each of its children for at most ``limit`` extra tokens in all
    (``len(segment) × (children - 1)``), is removed and its tokens prepended to each child's segment. A cached
    step costs about as much as two dozen tokens whatever its size, so a one-token node shared by two prompts
    (the option orders part after a token or two) is cheaper run twice than run alone, a wave earlier. Returns
    the new levels; the nodes are changed in place."""
    if limit <= 0:
        return levels
    roots: list[Node] = []
    stack: list[tuple[Node, Node | None]] = [(node, None) for node in reversed(levels[0])] if levels else []
    while stack:
        node, parent = stack.pop()
        extra = len(node.tokens) * (len(node.children) - 1)
        if not node.ends and node.children and extra <= limit:
            for child in node.children:
                child.tokens = node.tokens + child.tokens
            stack.extend((child, parent) for child in reversed(node.children))
            continue
        node.parent = parent
        if parent is None:
            roots.append(node)
        else:
            parent.children.append(node)
        kids, node.children = node.children, []
        stack.extend((child, node) for child in reversed(kids))
    out: list[list[Node]] = []
    frontier = roots
    while frontier:
        for node in frontier:
            node.level = len(out)
        out.append(frontier)
        frontier = [child for node in frontier for child in node.children]
    return out


def tree_token_count(levels: list[list[Node]]) -> int:
    """Tokens the tree computes (what running the prompts in full would compute: the sum of their lengths)."""
    return sum(len(node.tokens) for level in levels for node in level)


#: the cost model the batches are cut by, in units of one new token's pass through the layers: a call costs
#: :data:`CALL_COST` (a fixed cost per call; SmolLM2-135M, one thread, measured 2026-11-30: one row of 22 tokens
#: 91 ms against 1.8 ms a token in large batches, about 28 tokens' worth), each row its longest segment (left
#: padding runs like real tokens) and :data:`KEY_COST` per cached key (copying the past in and out, attention)
CALL_COST = 24.0
KEY_COST = 0.006
#: :func:`splice_short`'s limit: extra tokens run to save a node's own call
SPLICE_TOKENS = 8


def _batches(nodes: list[Node], max_rows: int, max_tokens: int) -> list[list[Node]]:
    """Nodes sorted by segment length, cut into batches of at most ``max_rows`` rows and ``max_tokens`` cells
    (rows × (past + segment)) so that the modelled cost of the calls is least: for each cut, :data:`CALL_COST` +
    rows × (longest segment + :data:`KEY_COST` × (longest past + longest segment)). A dynamic programme over the
    sorted nodes (contiguous batches): few calls where segments are alike, a cut where padding would cost more
    than a call."""
    widths = {id(n): 0 if n.parent is None else int(n.parent.ran_mask().sum()) for n in nodes}  # the compacted past
    order = sorted(nodes, key=lambda n: (len(n.tokens), widths[id(n)]))
    n = len(order)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        seg = len(order[end - 1].tokens)  # sorted: the batch's longest segment is its last node's
        past = 0
        for start in range(end - 1, max(end - max_rows, 0) - 1, -1):
            past = max(past, widths[id(order[start])])
            rows = end - start
            if rows > 1 and rows * (seg + past) > max_tokens:
                break
            cost = best[start] + CALL_COST + rows * (seg + KEY_COST * (past + seg))
            if cost < best[end]:
                best[end], cut[end] = cost, start
    out: list[list[Node]] = []
    end = n
    while end > 0:
        out.append(order[cut[end]:end])
        end = cut[end]
    return out[::-1]


def _gather_past(nodes: list[Node], seq_axes: Sequence[int]) -> tuple[list[np.ndarray], np.ndarray]:
    """The parents' cache rows of ``nodes`` stacked into one batch, compacted: each row's real (unmasked) tokens
    only, right-aligned, rows left-padded (mask 0, zeros) to the longest; a root's row (no parent) is all padding.
    Dropping masked columns changes nothing (the positions are fed explicitly) and keeps the past as short as the
    prompt, whatever padding came before. Each row is copied once, straight into the batch's arrays."""
    parents = [n.parent for n in nodes]
    real = [np.empty(0, np.int64) if p is None else np.flatnonzero(p.ran_mask()) for p in parents]
    width = max(len(r) for r in real)
    mask = np.zeros((len(nodes), width), np.int64)
    for r, cols in enumerate(real):
        mask[r, width - len(cols):] = 1
    donor = next(p for p in parents if p is not None)
    past = []
    for j, axis in enumerate(seq_axes):
        like = donor.kept()[j]
        shape = list(like.shape)
        shape[0], shape[axis] = len(nodes), width
        block = np.zeros(shape, like.dtype)
        for r, (p, cols) in enumerate(zip(parents, real, strict=True)):
            if p is not None:
                target = block[r].swapaxes(0, axis - 1)  # a view: the row's sequence axis first
                row = p.kept()[j][p.row]
                target[width - len(cols):] = np.take(row, cols, axis=axis - 1).swapaxes(0, axis - 1)
        past.append(block)
    return past, mask


StepFn = Callable[[np.ndarray, np.ndarray, np.ndarray, "list[np.ndarray] | None", bool],
                  "tuple[np.ndarray, list[np.ndarray] | None]"]


def _segments(batch: Sequence["Node"], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """The new tokens of each node in ``batch``, left-padded to the longest: ``(input_ids, mask)`` int64."""
    seg = max(len(n.tokens) for n in batch)
    ids = np.full((len(batch), seg), pad_id, np.int64)
    mask = np.zeros((len(batch), seg), np.int64)
    for r, node in enumerate(batch):
        ids[r, seg - len(node.tokens):] = node.tokens
        mask[r, seg - len(node.tokens):] = 1
    return ids, mask


def tree_next_token_logits(sequences: Sequence[Sequence[int]], step: StepFn,
                           seq_axes: Sequence[int], pad_id: int, *, max_rows: int = 32,
                           max_tokens: int = 4096, splice: int = SPLICE_TOKENS) -> tuple[np.ndarray, int]:
    """Logits ``(len(sequences), V)`` of the token after each sequence, via the radix tree and ``step``, and the
    number of tokens the tree ran.

    ``step(input_ids, attention_mask, position_ids, past, keep)`` runs one batch (``past`` None for roots) and
    returns the last position's logits and, when ``keep``, the present arrays; ``seq_axes`` gives, per past
    array, its sequence axis (batch is axis 0).

    Nodes run in waves: every node whose parent has run is ready, whatever its level, and the ready nodes are cut
    into batches (:func:`_batches`). A wave's last batch, when smaller than half of ``max_rows``, waits for the
    next wave's nodes if there are any: every call has a fixed cost, so few full calls beat many small ones. A
    parent's cache is freed once all its children have run."""
    levels = splice_short(radix_tree(sequences), splice)
    out: np.ndarray | None = None
    ready = list(levels[0]) if levels else []
    while ready:
        batches = _batches(ready, max_rows, max_tokens)
        held = batches.pop() if len(batches) > 1 and len(batches[-1]) < max_rows // 2 else []
        ready = list(held)
        for batch in batches:
            logits, present, mask = _run(batch, step, seq_axes, pad_id)
            if out is None:
                out = np.empty((len(sequences), logits.shape[-1]), np.float32)
            _settle(batch, logits, present, mask, out)
            ready.extend(child for node in batch for child in node.children)
    assert out is not None
    return out, tree_token_count(levels)


def _run(batch: list[Node], step: StepFn, seq_axes: Sequence[int],
         pad_id: int) -> tuple[np.ndarray, list[np.ndarray] | None, np.ndarray]:
    """One call of ``step`` on ``batch``: its logits, present arrays (when a node has children) and full mask."""
    ids, new_mask = _segments(batch, pad_id)
    seg = ids.shape[1]
    if all(node.parent is None for node in batch):
        past, mask = None, new_mask
    else:
        past, old = _gather_past(batch, seq_axes)
        mask = np.concatenate([old, new_mask], axis=1)
    keep = any(node.children for node in batch)
    logits, present = step(ids, mask, position_ids(mask)[:, -seg:], past, keep)
    return logits, present, mask


def _settle(batch: list[Node], logits: np.ndarray, present: list[np.ndarray] | None, mask: np.ndarray,
            out: np.ndarray) -> None:
    """Record a batch's results: logits of the prompts that end there, the cache rows of nodes with children;
    free each parent's cache once its last child has run."""
    for r, node in enumerate(batch):
        for i in node.ends:
            out[i] = logits[r]
        if node.children:
            node.present, node.row, node.mask, node.pending = present, r, mask[r], len(node.children)
        parent = node.parent
        if parent is not None:
            parent.pending -= 1
            if parent.pending == 0:
                parent.present = None
