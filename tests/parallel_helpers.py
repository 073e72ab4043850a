"""Test helpers for bltx.parallel: a tiny Llama-style stand-in model, deterministic data,
a training loop shared by single- and multi-process runs, and a torchrun launcher.

The stand-in uses the module names of bltx's transformer blocks (attention.wq..wo,
feed_forward.w1..w3, attention_norm, ffn_norm, layers as a ModuleDict) so the plans tested
here are the ones applied to the BLT latent backbone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
DIST_SCRIPTS = Path(__file__).resolve().parent / "dist_scripts"


@dataclass
class TinyConfig:
    vocab: int = 64
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 2
    ffn_dim: int = 128
    seq_len: int = 16


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()
        return self.weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)

    def init_weights(self):
        nn.init.ones_(self.weight)


def rope(seq_len: int, head_dim: int, device=None):
    inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))
    f = torch.arange(seq_len, device=device).float()[:, None] * inv[None]
    f = torch.cat([f, f], -1)
    return f.cos(), f.sin()


def apply_rope(x, cos, sin):
    a, b = x.chunk(2, -1)
    return x * cos.to(x.dtype) + torch.cat([-b, a], -1) * sin.to(x.dtype)


class Attention(nn.Module):
    """GQA attention; reshapes with self.n_heads/n_kv_heads (TP divides them per rank)."""

    def __init__(self, c: TinyConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = c.n_heads, c.n_kv_heads, c.dim // c.n_heads
        self.wq = nn.Linear(c.dim, c.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(c.dim, c.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(c.dim, c.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(c.n_heads * self.head_dim, c.dim, bias=False)

    def forward(self, x, rope_cs):
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, *rope_cs), apply_rope(k, *rope_cs)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.wo(out.transpose(1, 2).reshape(B, T, -1))


class FeedForward(nn.Module):
    def __init__(self, c: TinyConfig):
        super().__init__()
        self.w1 = nn.Linear(c.dim, c.ffn_dim, bias=False)
        self.w3 = nn.Linear(c.dim, c.ffn_dim, bias=False)
        self.w2 = nn.Linear(c.ffn_dim, c.dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, c: TinyConfig):
        super().__init__()
        self.attention_norm = RMSNorm(c.dim)
        self.attention = Attention(c)
        self.ffn_norm = RMSNorm(c.dim)
        self.feed_forward = FeedForward(c)

    def forward(self, x, rope_cs):
        x = x + self.attention(self.attention_norm(x), rope_cs)
        return x + self.feed_forward(self.ffn_norm(x))


class TinyLlama(nn.Module):
    """Embedding -> blocks -> norm -> head. `sequence_parallel` selects its TP plan."""

    def __init__(self, c: TinyConfig | None = None, sequence_parallel: bool = False):
        super().__init__()
        self.c = c = c or TinyConfig()
        self.sequence_parallel = sequence_parallel
        self.tok_embeddings = nn.Embedding(c.vocab, c.dim)
        self.layers = nn.ModuleDict({str(i): Block(c) for i in range(c.n_layers)})
        self.norm = RMSNorm(c.dim)
        self.output = nn.Linear(c.dim, c.vocab, bias=False)

    def forward(self, ids):
        h = self.tok_embeddings(ids)
        rope_cs = rope(ids.shape[1], self.c.dim // self.c.n_heads, ids.device)
        for layer in self.layers.values():
            h = layer(h, rope_cs)
        return self.output(self.norm(h))

    @torch.no_grad()
    def init_weights(self):
        nn.init.normal_(self.tok_embeddings.weight, std=0.5)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=m.in_features ** -0.5)
            elif isinstance(m, RMSNorm):
                m.init_weights()

    def parallel_plan(self):
        from bltx.parallel.plans import ParallelPlan

        return ParallelPlan(
            blocks=[f"layers.{i}" for i in self.layers],
            tp_blocks=[f"layers.{i}" for i in self.layers],
            sequence_parallel=self.sequence_parallel,
            tp_root=tp_root_sp if self.sequence_parallel else None,
            float8_skip=["output"],
        )


def tp_root_sp(model, tp_mesh, float8_tensorwise):
    """Sequence-parallel boundaries: embedding output sharded on the sequence, final norm
    on the shard, head gathers the sequence and returns replicated logits."""
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import (
        ColwiseParallel, RowwiseParallel, SequenceParallel, parallelize_module,
    )

    parallelize_module(model, tp_mesh, {
        "tok_embeddings": RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1)),
        "norm": SequenceParallel(),
        "output": ColwiseParallel(input_layouts=Shard(1), output_layouts=Replicate()),
    })


def make_batches(steps: int, batch: int, c: TinyConfig, seed: int = 0) -> torch.Tensor:
    """[steps, batch, seq_len + 1] token ids (inputs and shifted targets)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, c.vocab, (steps, batch, c.seq_len + 1), generator=g)


def reference_state(c: TinyConfig | None = None, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = TinyLlama(c)
    model.init_weights()
    return {k: v.clone() for k, v in model.state_dict().items()}


def make_optimizer(model, lr: float = 1e-2):
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)


def train(model, batches, world=None, opt=None, max_norm: float = 0.5,
          amp_dtype: torch.dtype | None = None) -> list[float]:
    """AdamW steps; each data-parallel rank takes its contiguous slice of every global
    batch; returns the global-batch loss (averaged over dp ranks) of each step. Clipping
    at 0.5 is active on these steps, so it is part of what parity tests check."""
    from bltx.parallel.grad import clip_grad_norm_

    dp_rank = world.dp_rank if world else 0
    dp_size = world.dp_size if world else 1
    opt = opt or make_optimizer(model)
    losses = []
    for step in range(batches.shape[0]):
        global_batch = batches[step]
        per_rank = global_batch.shape[0] // dp_size
        local = global_batch[dp_rank * per_rank:(dp_rank + 1) * per_rank]
        ids, targets = local[:, :-1], local[:, 1:]
        if amp_dtype is not None:
            with torch.autocast("cpu", dtype=amp_dtype):
                logits = model(ids)
        else:
            logits = model(ids)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        loss.backward()
        clip_grad_norm_(model.parameters(), max_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        logged = world.mean(loss.detach()) if world else loss.detach()
        losses.append(float(logged))
    return losses


# -- the real BLT, tiny ------------------------------------------------------------------

BLT_SEQ = 24


def blt_model():
    import bltx
    from bltx.model.debug import tiny_table

    return bltx.build("model", tiny_table(), where="model")


def blt_reference_state(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = blt_model()
    return {k: v.clone() for k, v in model.state_dict().items()}


def make_byte_batches(steps: int, batch: int, seq_len: int = BLT_SEQ, seed: int = 0) -> torch.Tensor:
    """[steps, batch, seq_len + 1] byte ids (bytes.py: byte b -> id b + 4)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, 260, (steps, batch, seq_len + 1), generator=g)


def torchrun(script: str, *args: str, nproc: int = 2, timeout: int = 600, env: dict | None = None):
    """Run tests/dist_scripts/SCRIPT under `torchrun --standalone`; CompletedProcess."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={nproc}", str(DIST_SCRIPTS / script), *args,
    ]
    full_env = {
        **os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore", **(env or {}),
    }
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full_env)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
