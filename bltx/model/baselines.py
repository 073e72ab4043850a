"""Baselines for fair comparisons with BLT, trained by the same trainer from recipes:

- `byte_transformer`: a Llama-style transformer over bytes (every byte a patch, no local
  models): embedding of the 260 ids, causal transformer, norm, head.
- `bpe_transformer`: the same transformer over BPE tokens, its tokenizer trained on the
  recipe's data with `tokenizers` (see bltx/patching/bpe_vocab.py).

Both report bits per byte measured on bytes. The BPE model has no per-byte distribution,
so it follows the usual convention (the BLT paper's too): bpb = (sum of token NLLs over a
window) / (bytes in the window). Its forward returns that sum as the output's `nll` when
given targets (bltx/model/output.py), so the trainer and `bltx.train.loss` score it like
any other model: the NLL of the tokens of x_1..x_{T-1} (x_0 is the context token) plus, for the target after the window,
the next token's distribution marginalised to its first byte. The last token may be cut by
the window edge, which costs a little (a few hundredths of a bit per byte at T = 256)
against an unbounded context.

Its forward returns, at each byte, the first-byte marginal of the token that follows the
token holding that byte: an exact next-byte distribution at token ends (the last position
always is one), so generation reads each prompt's last row (right padding ends a shorter
prompt's last token, so batched prompts read theirs as they would alone).
Its output's `starts` are the token starts, so the trainer logs bytes per token as the mean
patch length.
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bltx.bytes import OFFSET, VOCAB_SIZE
from bltx.patching.bpe_vocab import DEFAULT_CACHE, BpeVocab, load_or_train, load_tokenizer, split_specials
from bltx.model.attention import attention_backend, check_backend_name
from bltx.model.causal_lm import CausalLM
from bltx.model.output import ModelOutput, lm_output
from bltx.model.transformer import TransformerDims
from bltx.protocols import FlopTerm
from bltx.registry import register


@dataclass
class LMDims(TransformerDims):
    dim: int = 256
    n_layers: int = 4
    n_heads: int = 4
    attention: str = "sdpa"

    def __post_init__(self):
        super().__post_init__()
        check_backend_name(self.attention)


def _token_starts(owner: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """bool [B, T]: where a token starts, from `owner` (the token index holding byte t+1)."""
    starts = torch.ones_like(ids, dtype=torch.bool)
    if owner.shape[1] > 1:
        starts[:, 2:] = owner[:, 1:] != owner[:, :-1]
    return starts


def _dims_only(cfg: LMDims) -> TransformerDims:
    """The TransformerDims fields of `cfg`, every one (a new field cannot be dropped here)."""
    return TransformerDims(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(TransformerDims)})


@register("model", "byte_transformer")
class ByteTransformer(nn.Module):
    """Byte-level baseline: a transformer LM whose tokens are bytes (ids [B, T] -> logits)."""

    @dataclass
    class Config(LMDims):
        pass

    def __init__(self, cfg: Config, **context):
        super().__init__()
        self.cfg = cfg
        self.lm = CausalLM(_dims_only(cfg), VOCAB_SIZE, attention_backend(cfg.attention, "model.attention"))

    def forward(self, ids: torch.Tensor, targets: torch.Tensor | None = None, **ignored) -> ModelOutput:
        return lm_output(self.lm(ids), targets)

    def init_weights(self) -> None:
        self.lm.init_weights()

    def flop_terms(self, seq_len: int, patch_len: float) -> dict[str, FlopTerm]:
        """Every byte is a token: the LM's forward FLOPs per token."""
        return {"lm": FlopTerm(self.lm.flops_per_token(seq_len))}


@register("model", "bpe_transformer")
class BpeTransformer(nn.Module):
    """BPE-token baseline; bits per byte from token NLLs (see the module doc)."""

    # Scores whole tokens: only a prompt's last logits row is its exact byte prediction (CUTE
    # feeds one prompt at a time, bltx.eval.cute), and a masked target byte cannot be left out
    # of a token's cost.
    predicts_whole_tokens = True

    @dataclass
    class Config(LMDims):
        # Tokenizer: trained on `paths` (use the recipe's data.paths) with `vocab_size`
        # tokens and cached, or loaded from a `tokenizer` JSON file.
        paths: list[str] = field(default_factory=lambda: ["bltx:tiny_shakespeare"])
        vocab_size: int = 512
        fraction: float = 0.95
        tokenizer: str = ""
        cache_dir: str = DEFAULT_CACHE

    def __init__(self, cfg: Config, **context):
        super().__init__()
        self.cfg = cfg
        self.vocab: BpeVocab = (load_tokenizer(cfg.tokenizer) if cfg.tokenizer
                                else load_or_train(cfg.paths, cfg.vocab_size, cfg.fraction, cfg.cache_dir))
        self.n_bpe = self.vocab.size
        # Token ids: the BPE vocabulary, then one token per special bltx id (PAD/BOS/EOS/...).
        n_tokens = self.n_bpe + OFFSET
        self.lm = CausalLM(_dims_only(cfg), n_tokens, attention_backend(cfg.attention, "model.attention"))
        first = torch.cat([self.vocab.first_byte_ids(), torch.arange(OFFSET)])
        # [n_tokens, 260] 0/1: token -> the id of its first byte (for the last row's marginal).
        self.register_buffer("first_byte", F.one_hot(first, VOCAB_SIZE).float(), persistent=False)

    # -- tokenization (host side, per batch) --------------------------------------------------

    def tokenize(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(tokens [B, M+1] (context token first, padded with PAD), n_tokens [B] (real ones
        after the context token), owner [B, T-1] (1-based index of the token holding byte
        t+1), token_len [B, M+1] bytes per token)."""
        rows = ids.detach().cpu().numpy()
        B, T = rows.shape
        per_row = []
        texts, where = [], []
        for b in range(B):
            runs = split_specials(rows[b, 1:])
            per_row.append(runs)
            for k, (kind, value) in enumerate(runs):
                if kind == "bytes":
                    texts.append(value)
                    where.append((b, k))
        encoded = dict(zip(where, self.vocab.encode_batch(texts))) if texts else {}
        seqs, lens = [], []
        for b in range(B):
            toks, tl = [self._single(int(rows[b, 0]))], [1]
            for k, (kind, value) in enumerate(per_row[b]):
                if kind == "special":
                    toks.append(self.n_bpe + value)
                    tl.append(1)
                else:
                    t_ids, t_lens = encoded[(b, k)]
                    toks.extend(t_ids)
                    tl.extend(t_lens)
            seqs.append(toks)
            lens.append(tl)
        M1 = max(len(s) for s in seqs)
        tokens = np.full((B, M1), self.n_bpe, dtype=np.int64)  # PAD token (special id 0)
        token_len = np.zeros((B, M1), dtype=np.int64)
        owner = np.zeros((B, max(T - 1, 0)), dtype=np.int64)
        for b in range(B):
            tokens[b, : len(seqs[b])] = seqs[b]
            token_len[b, : len(lens[b])] = lens[b]
            owner[b] = np.repeat(np.arange(1, len(lens[b])), lens[b][1:])
        n_tokens = np.array([len(s) - 1 for s in seqs])
        dev = ids.device
        return (torch.from_numpy(tokens).to(dev), torch.from_numpy(n_tokens).to(dev),
                torch.from_numpy(owner).to(dev), torch.from_numpy(token_len).to(dev))

    def _single(self, idv: int) -> int:
        """Token of one bltx id: its special token, or its single-byte BPE token."""
        if idv < OFFSET:
            return self.n_bpe + idv
        return self.vocab.tokenizer.token_to_id(bytes([idv - OFFSET]).decode("latin-1"))

    def patch(self, ids: torch.Tensor, entropies=None, include_next: bool = False) -> torch.Tensor:
        """Token starts [B, T] (for statistics: bytes per token as mean patch length); a
        False column appended with include_next (forward reads no starts)."""
        starts = _token_starts(self.tokenize(ids)[2], ids)
        return F.pad(starts, (0, 1), value=False) if include_next else starts

    # -- forward ------------------------------------------------------------------------------

    def _first_byte_logp(self, logp: torch.Tensor) -> torch.Tensor:
        """Next-token log-probabilities [..., V] -> log-probabilities of its first byte."""
        return torch.log((logp.exp() @ self.first_byte).clamp(min=1e-30))

    def forward(self, ids: torch.Tensor, targets: torch.Tensor | None = None, **ignored) -> ModelOutput:
        """ids [B, T] -> ModelOutput with the token starts and, with `targets`, the summed NLL
        (nats) of the window's tokens and of the target after the window (see the module
        doc); without, logits [B, T, 260]: at byte t the first-byte marginal of the token
        after the one holding byte t (exact next-byte logits at token ends and the last row)."""
        B, T = ids.shape
        tokens, n_tokens, owner, _ = self.tokenize(ids)
        logp = torch.log_softmax(self.lm(tokens).float(), dim=-1)  # [B, M+1, V]
        starts = _token_starts(owner, ids)
        if targets is None:
            holder = F.pad(owner, (1, 0))  # token index holding byte t (0: the context token)
            marginal = self._first_byte_logp(logp)  # [B, M+1, 260]
            return ModelOutput(logits=marginal.gather(1, holder[..., None].expand(B, T, VOCAB_SIZE)), starts=starts)
        # NLL of token j (1-based) is predicted at position j-1; padding tokens don't count.
        nll = -logp[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]  # [B, M]
        real = torch.arange(nll.shape[1], device=ids.device)[None, :] < n_tokens[:, None]
        rows = torch.arange(B, device=ids.device)
        tail = self._first_byte_logp(logp[rows, n_tokens]).gather(-1, targets[:, -1:])
        return ModelOutput(nll=(nll * real).sum() - tail.sum(), starts=starts)

    def init_weights(self) -> None:
        self.lm.init_weights()

    def flop_terms(self, seq_len: int, patch_len: float) -> dict[str, FlopTerm]:
        """Per byte = per token / bytes per token (`patch_len`: the measured mean)."""
        tokens = max(seq_len / patch_len, 1.0)
        return {"lm": FlopTerm(self.lm.flops_per_token(tokens) / patch_len)}
