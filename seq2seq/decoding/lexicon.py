"""A word list as a beam-search scorer: a prefix tree over the characters of its words, with the words'
unigram probabilities spread over their letters (lexicon decoding with look-ahead, as wav2letter's and
torchaudio's lexicon decoders do for CTC, here for the joint attention/CTC search).

A character-level model spells a word it has never read by its sound ("wather", "comentary"); a
lexicon keeps the search on real words. Each node of the tree is a prefix; its look-ahead score is
``log`` of the total probability of the words below it, so that the increments of a word's letters and
of the space (or end of sentence) after it sum to ``log p(word)``. Leaving the tree (a word the list
does not hold) costs ``oov_penalty`` once, then the word is spelled freely: the list constrains,
without forbidding, what it does not know. Every increment is ``<= 0``, so the exact early stop holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from seq2seq.core.text import EOS_ID

_NEG_INF = float("-inf")


@dataclass(frozen=True)
class LexiconTrie:
    """The prefix tree of a word list, as tensors over token ids (node 0: the root, the last node: a
    word outside the list).

    Attributes:
        child: (M + 1, V) the node after each token: a letter moves down the tree (or to the
            out-of-list node), a word boundary (space, EOS) back to the root.
        prefix: (M + 1,) float64 ``log`` total probability of the words that start with the node's
            prefix (0 at the root and the out-of-list node).
        final: (M + 1,) float64 ``log p(word)`` where a node spells a whole word, else ``-inf``.
        letter: (V,) bool, the tokens words are spelled with.
        boundary: (V,) bool, the tokens that end a word (space and EOS).
        space_id: the token id between words.
        words: words in the tree.
    """

    child: torch.Tensor
    prefix: torch.Tensor
    final: torch.Tensor
    letter: torch.Tensor
    boundary: torch.Tensor
    space_id: int
    words: int

    @property
    def outside(self) -> int:
        """The node of a word that the list does not hold."""
        return self.child.shape[0] - 1

    @classmethod
    def build(
        cls,
        words: Sequence[tuple[Sequence[int], float]],
        letters: Sequence[int],
        space_id: int,
        vocab_size: int,
    ) -> LexiconTrie:
        """words: (token ids of a word, weight > 0); weights are normalised to probabilities.
        letters: every token id a word may be spelled with (the space excluded)."""
        if not words:
            raise ValueError("the lexicon holds no word the tokenizer can spell")
        total = sum(weight for _, weight in words)
        children: list[dict[int, int]] = [{}]
        mass, final = [0.0], [0.0]
        for ids, weight in words:
            p, node = weight / total, 0
            mass[0] += p
            for token in ids:
                nxt = children[node].get(token)
                if nxt is None:
                    nxt = children[node][token] = len(children)
                    children.append({})
                    mass.append(0.0)
                    final.append(0.0)
                node = nxt
                mass[node] += p
            final[node] += p
        outside = len(children)  # the out-of-list node follows the tree's nodes
        child = torch.full((outside + 1, vocab_size), outside, dtype=torch.int32)
        rows = [node for node, kids in enumerate(children) for _ in kids]
        columns = [token for kids in children for token in kids]
        child[rows, columns] = torch.tensor(
            [n for kids in children for n in kids.values()], dtype=torch.int32
        )
        letter = torch.zeros(vocab_size, dtype=torch.bool)
        letter[list(letters)] = True
        boundary = torch.zeros(vocab_size, dtype=torch.bool)
        boundary[[space_id, EOS_ID]] = True
        child[:, ~letter] = 0  # a boundary (or an id no word holds, which scores -inf) returns to the root
        prefix = torch.tensor([math.log(m) for m in mass] + [0.0], dtype=torch.float64)
        prefix[0] = 0.0  # the root holds every word: exactly log 1
        logs = [math.log(f) if f > 0 else _NEG_INF for f in final] + [_NEG_INF]
        final_log = torch.tensor(logs, dtype=torch.float64)
        return cls(child, prefix, final_log, letter, boundary, space_id, len(words))

    def to(self, device) -> LexiconTrie:
        moved = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        return LexiconTrie(**{**vars(self), **moved})


@dataclass
class LexiconState:
    """The tree node each hypothesis has reached, (N,)."""

    node: torch.Tensor


class LexiconScorer:
    """A full scorer (``partial = False``) over a :class:`LexiconTrie`.

    Increments per token from a node ``n`` with look-ahead ``S(n)``:
    a letter that continues a listed word, ``S(child) - S(n)``; a boundary after a listed word,
    ``log p(word) - S(n)``; a letter or boundary that leaves the list, ``min(0, -oov_penalty - S(n))``;
    anything inside an unlisted word, 0. A space at the root (an empty word) and tokens that are neither
    letters nor boundaries score ``-inf``; EOS at the root scores 0.

    Args:
        trie: the word list's tree, on the decoding device.
        oov_penalty: the cost (log domain, ``>= 0``) of a word the list does not hold.
    """

    partial = False

    def __init__(self, trie: LexiconTrie, oov_penalty: float):
        self.trie, self.oov_penalty = trie, oov_penalty

    def init_state(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> LexiconState:
        return LexiconState(torch.zeros(memory.shape[0], dtype=torch.long, device=memory.device))

    def score(self, tokens, state: LexiconState, candidates=None):
        """-> (N, V) float32 increments (or (N, K) at ``candidates``)."""
        t = self.trie
        node = state.node
        child = t.child.index_select(0, node).long()  # (N, V)
        here = t.prefix.index_select(0, node)[:, None]  # (N, 1)
        listed = (node != t.outside)[:, None]
        leave = (-self.oov_penalty - here).clamp(max=0.0)
        down = torch.where(child != t.outside, t.prefix[child] - here, leave)
        end = t.final.index_select(0, node)[:, None]
        close = torch.where(end > _NEG_INF, end - here, leave)
        scores = torch.where(t.letter, down, torch.where(t.boundary, close, _NEG_INF))
        scores = torch.where(listed, scores, torch.where(t.letter | t.boundary, 0.0, _NEG_INF))
        at_root = node == 0
        scores[:, t.space_id] = torch.where(at_root, _NEG_INF, scores[:, t.space_id])
        scores[:, EOS_ID] = torch.where(at_root, 0.0, scores[:, EOS_ID])
        scores = scores.float()
        return (scores if candidates is None else scores.gather(1, candidates)), state

    def select_state(self, state: LexiconState, indices, tokens=None) -> LexiconState:
        node = state.node.index_select(0, indices)
        if tokens is not None:
            node = self.trie.child[node, tokens].long()
        return LexiconState(node)
