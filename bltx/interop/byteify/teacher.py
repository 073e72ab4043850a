"""Exact byte-level distillation targets from the source's next-token distributions.

The byteified model is a model of bytes *and* boundaries: at byte t it first says whether
t ends the patch (token) it is in, then gives the next byte, from the head for "inside a
token" or "after a token". Written that way, the source's distribution over the next token
q(v) = P(token_{j} = v | tokens before) factors exactly into byte-level conditionals, with u
the bytes of token j read so far (u is a prefix of it) and S(u) = sum of q(v) over tokens v
starting with u:

    P(token ends after u)            = q(u) / S(u)
    P(next byte c | it goes on)      = S(uc) / (S(u) - q(u))
    P(first byte c of the next token) = sum of q_{j}(v) over tokens v starting with c

so a byte model that matched all three at every byte would assign every (bytes,
boundaries) sequence exactly the source's probability of that token sequence. These are
the targets: exact for the joint process (no approximation inside a token or at its end),
given the tokens the source read. What is not exact is the byte-only marginal: the source
also puts probability on non-canonical segmentations of the same bytes, which the joint
process keeps apart (its NLL is the source's NLL of the canonical tokens, the number the
source's bpb counts).

All sums are differences of a cumulative sum over the vocabulary sorted by bytes (the
prefix trie of bltx/interop/byteify/vocab.py); a byte's children are read through the trie's
edges, so memory grows with the positions' fan-out, not with 256 per trie node.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from bltx.bytes import OFFSET, VOCAB_SIZE
from bltx.interop.byteify.vocab import trie_edges

TINY = 1e-30


class Targets(NamedTuple):
    states: torch.Tensor     # [B, P, D]: the source's final-normed states after each patch's token
    inside: torch.Tensor     # bool [B, T]: the byte has targets (its token's prefix is known, and a token before it)
    p_end: torch.Tensor      # float [B, T]: P(the token ends at t)
    cont: torch.Tensor       # float [B, T, 260]: P(next byte | the token goes on) (zeros where it cannot)
    can_go_on: torch.Tensor  # bool [B, T]: some longer token starts with the prefix
    first: torch.Tensor      # float [B, P, 260]: first-byte distribution after each patch's token
    first_ok: torch.Tensor   # bool [B, P]: the patch is a known token


@torch.no_grad()
def distillation_targets(states: torch.Tensor, q: torch.Tensor, first: torch.Tensor, patch_token: torch.Tensor,
                         node: torch.Tensor, patch_ids: torch.Tensor, trie: dict[str, torch.Tensor],
                         sorted_tokens: torch.Tensor) -> Targets:
    """states [B, P, D]: the source's states over the window's tokens; q [B, P, V]: its
    next-token probabilities after each patch's token; first [B, P, 260]: their first-byte
    marginals; patch_token [B, P], node [B, T], patch_ids [B, T] from SourceVocab.describe;
    trie / sorted_tokens: SourceVocab's."""
    prev = patch_ids - 1
    prev_ok = (prev >= 0) & (patch_token.gather(1, prev.clamp(min=0)) >= 0)
    inside = (node >= 0) & prev_ok
    p_end, cont, can_go_on = byte_factors(q, prev, node, inside, trie, sorted_tokens)
    return Targets(states, inside, p_end, cont, can_go_on, first, patch_token >= 0)


def byte_factors(q: torch.Tensor, prev: torch.Tensor, node: torch.Tensor, where: torch.Tensor,
                 trie: dict[str, torch.Tensor], sorted_tokens: torch.Tensor):
    """The module doc's two in-token factors at every byte `where` holds: q [B, P, V] the
    token distributions, prev [B, T] the patch whose distribution each byte reads, node
    [B, T] its prefix's trie node -> (P(ends) [B, T], P(next byte | goes on) [B, T, 260],
    whether it can go on [B, T]); zeros elsewhere. Differentiable in q (a prior reads the
    model's own states through it)."""
    B, P, V = q.shape
    T = node.shape[1]
    cum = torch.nn.functional.pad(q[..., sorted_tokens].cumsum(-1), (1, 0)).reshape(B * P, -1)
    rows = (torch.arange(B, device=q.device)[:, None] * P + prev.clamp(min=0))[where]
    n = node[where]
    lo, hi, token_at = trie["lo"][n], trie["hi"][n], trie["token_at"][n]
    total = cum[rows, hi] - cum[rows, lo]
    own = torch.where(token_at >= 0, q.reshape(B * P, V)[rows, token_at.clamp(min=0)], torch.zeros_like(total))
    rest = total - own
    # Children of each position's node, flattened (position, edge) pairs.
    pair, edge = trie_edges(trie, n)
    child = trie["edge_node"][edge]
    mass = cum[rows[pair], trie["hi"][child]] - cum[rows[pair], trie["lo"][child]]
    index = pair * VOCAB_SIZE + trie["edge_byte"][edge] + OFFSET
    cont_flat = torch.zeros(n.numel() * VOCAB_SIZE, device=q.device, dtype=q.dtype).index_put(
        (index,), mass / rest[pair].clamp_min(TINY)).view(n.numel(), VOCAB_SIZE)
    p_end = torch.zeros(B, T, device=q.device, dtype=q.dtype).masked_scatter(
        where, (own / total.clamp_min(TINY)).clamp(0.0, 1.0))
    cont = torch.zeros(B, T, VOCAB_SIZE, device=q.device, dtype=q.dtype).masked_scatter(where[..., None], cont_flat)
    can_go_on = torch.zeros(B, T, dtype=torch.bool, device=q.device).masked_scatter(
        where, rest > 1e-12 * total.clamp_min(TINY))
    return p_end, cont, can_go_on
