"""Byte embedder: a byte table plus hashed n-gram tables, summed (BLT section 3.2.1).

For every n in `ngram_sizes` and every hash function f, the n bytes ending at position t
(left-padded with id 0) are hashed with a polynomial hash, id_0 * p^0 + ... + id_{n-1} *
p^(n-1) in wrapping int64 arithmetic, reduced modulo `hash_vocab`, and looked up in that
(f, n) slice of one fused table. The primes and the slice order (function-major, then n)
are those of the released BLT, so hash tables convert to and from HF checkpoints.
With document ids (data.document_mask), ids of another document count as that padding, so
an example's n-grams are those it would have at the start of a window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from bltx.checks import at_least, require
from bltx.bytes import VOCAB_SIZE
from bltx.model.init import init_embedding
from bltx.registry import register

# Base of the polynomial hash for the i-th hash function (cycled when there are more).
HASH_PRIMES = (
    1000000007,
    5915587277,
    1500450271,
    3267000013,
    5754853343,
    4093082899,
    9576890767,
    3628273133,
    2860486313,
    5463458053,
    3367900313,
)


def _wrap_int64(value: int) -> int:
    value %= 1 << 64
    return value - (1 << 64) if value >= 1 << 63 else value


def prime_powers(prime: int, n: int) -> list[int]:
    """p^0 .. p^(n-1) as wrapping int64 values (what int64 tensor arithmetic produces)."""
    return [_wrap_int64(prime**i) for i in range(n)]


def ngram_hash(ids: torch.Tensor, n: int, prime: int, vocab: int, doc: torch.Tensor | None = None) -> torch.Tensor:
    """Hash of the n ids ending at each position, in [0, vocab). ids [B, T] -> [B, T];
    `doc` [B, T] (optional): ids outside the position's document count as padding."""
    padded = F.pad(ids.long(), (n - 1, 0), value=0)
    windows = padded.unfold(1, n, 1)  # [B, T, n], oldest byte first
    if doc is not None:
        docs = F.pad(doc, (n - 1, 0), value=-1).unfold(1, n, 1)
        windows = windows * (docs == doc[..., None])
    powers = torch.tensor(prime_powers(prime, n), dtype=torch.long, device=ids.device)
    return torch.remainder((windows * powers).sum(-1), vocab)


@register("byte_embedder", "hash_ngram")
class HashNgramEmbedder(nn.Module):
    """Byte embedding + hash n-gram embeddings. Context: `dim` (the local encoder width)."""

    @dataclass
    class Config:
        ngram_sizes: list[int] = field(default_factory=lambda: [3, 4, 5, 6, 7, 8])
        hash_vocab: int = 500002
        hash_functions: int = 1

        def __post_init__(self):
            require(all(n >= 1 for n in self.ngram_sizes), "ngram_sizes", self.ngram_sizes, "must all be >= 1")
            at_least("hash_vocab", self.hash_vocab, 1)
            at_least("hash_functions", self.hash_functions, 0)

    def __init__(self, cfg: Config, dim: int, **context):
        super().__init__()
        self.cfg = cfg
        self.dim = dim
        self.byte_table = nn.Embedding(VOCAB_SIZE, dim)
        n_tables = cfg.hash_functions * len(cfg.ngram_sizes)
        # A bag table: each position sums its rows of every slice in one lookup (sum_rows).
        self.hash_table = nn.EmbeddingBag(n_tables * cfg.hash_vocab, dim, mode="sum") if n_tables else None

    def hash_ids(self, ids: torch.Tensor, doc_ids: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Row indices into `hash_table`, one [B, T] tensor per (function, n) slice."""
        out = []
        for f in range(self.cfg.hash_functions):
            prime = HASH_PRIMES[f % len(HASH_PRIMES)]
            for n in self.cfg.ngram_sizes:
                out.append(ngram_hash(ids, n, prime, self.cfg.hash_vocab, doc_ids) + len(out) * self.cfg.hash_vocab)
        return out

    def forward(self, ids: torch.Tensor, doc_ids: torch.Tensor | None = None) -> torch.Tensor:
        h = self.byte_table(ids)
        if self.hash_table is not None:
            # Hash ids are integer bookkeeping: no gradient, and cheap to recompute.
            with torch.no_grad():
                rows = self.hash_ids(ids, doc_ids)
            h = h + self.sum_rows(rows)
        return h

    def sum_rows(self, rows: list[torch.Tensor]) -> torch.Tensor:
        """Sum of the hash-table rows at each position: `rows` holds one [B, T] index tensor
        per (function, n) slice. One bag lookup of all slices, not one lookup per slice: the
        backward builds one dense table-sized gradient instead of one per slice (BLT-1B's
        table has 500k x 6 rows of 1024), no [B, T, slices, dim] tensor is formed, and a
        row-sharded table (bltx/parallel/row_sharded.py) exchanges ids and sums once per
        step instead of once per slice."""
        stacked = torch.stack(rows, dim=-1)
        return self.hash_table(stacked.reshape(-1, stacked.shape[-1])).view(*stacked.shape[:-1], self.dim)

    def init_weights(self) -> None:
        init_embedding(self.byte_table)
        if self.hash_table is not None:
            init_embedding(self.hash_table)

    # -- cached generation (bltx/model/cache.py): the n-grams ending at a new byte need only
    # the last max(ngram_sizes) - 1 ids of the row, kept in `cache["ctx"]` (oldest first).

    def init_cache(self, batch: int, capacity: int) -> dict:
        width = max([1, *self.cfg.ngram_sizes]) - 1 if self.hash_table is not None else 0
        return {"ctx": torch.zeros(batch, width, dtype=torch.long, device=self.byte_table.weight.device)}

    def prefill(self, ids: torch.Tensor, lengths: torch.Tensor, cache: dict) -> torch.Tensor:
        ctx = cache["ctx"]
        width = ctx.shape[1]
        if width:
            # Left-pad with id 0 as the n-gram hash does; row b's context is ids[L-width : L].
            padded = F.pad(ids.long(), (width, 0), value=0)
            cols = lengths[:, None] + torch.arange(width, device=ids.device)[None]
            ctx.copy_(torch.gather(padded, 1, cols))
        return self(ids)

    def step(self, ids: torch.Tensor, cache: dict) -> torch.Tensor:
        """ids [B, T] -> h [B, T, dim]; the context slides by T ids."""
        ctx = cache["ctx"]
        T = ids.shape[1]
        h = self.byte_table(ids)
        if self.hash_table is not None:
            # The context holds the max(ngram_sizes) - 1 ids before the new ones (zeros at
            # the start, as the forward's left padding), so the window's last T hashes are
            # the forward's.
            window = torch.cat([ctx, ids.long()], dim=1)
            h = h + self.sum_rows([r[:, -T:] for r in self.hash_ids(window)])
            if ctx.shape[1]:
                ctx.copy_(window[:, window.shape[1] - ctx.shape[1]:])
        return h

    def forward_flops(self, seq_len: int, patch_len: float) -> float:
        """Forward FLOPs per byte: lookups are free, the hash rows are summed (one add per
        table and channel). Matmul-only counters (FlopCounterMode) see 0 here."""
        return float(self.cfg.hash_functions * len(self.cfg.ngram_sizes) * self.dim)
