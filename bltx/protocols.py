"""The written contracts: what a component must offer to fill a slot of a BLT, and the
optional capabilities the engine uses when a component has them. A plugin author reads this
file to know what to implement; `check` runs once at build time and names what is missing.

Every component is an `nn.Module` registered by name (`@register(kind, name)`) with a
nested `@dataclass Config`, built as `cls(cfg, **context)` (context: sizes the parent knows,
e.g. `latent_dim`, the attention `backend`). Shapes: B batch, T bytes, P patches (padded to
a static count so forward compiles with fullgraph=True).

Required, per slot:
  Patcher       (ids [B, T], entropies=None) -> starts bool [B, T]; True where a patch begins,
                decided from ids[<= t] only (bltx/patching/base.py is the base class).
  ByteEmbedder  .dim; (ids [B, T]) -> h [B, T, dim].
  Encoder       .dim; (h [B, T, dim], patch_ids [B, T], P) -> (h [B, T, dim], patches [B, P, latent_dim]).
  Latent        .dim; (x [B, P, dim]) -> [B, P, dim], causal over P.
  Decoder       .dim; (h [B, T, dim], latent [B, P, latent_dim], patch_ids [B, T]) -> logits [B, T, 260].
  ByteModel     (ids [B, T], **kw) -> next-byte logits [B, T, 260]; init_weights().
  DataSource    a `data_source` reader: .suffixes (file endings it claims under type "auto") and
                open(path, text_field, cache_dir) -> DocumentFile: .kind, .num_docs, len() (text
                bytes), read_doc(doc, lo, hi) -> uint8 bytes [lo, hi) of one document; a file of
                several documents also has .index (bltx/data/doc_index.py, its lengths).
All modules with weights implement `init_weights()` (called after meta-device build).

Optional capabilities, a name each (asked by `has(obj, name)`, required by `check(...,
needs=)`; never by ad-hoc getattr):
  flops           forward_flops(seq_len, patch_len) -> float: forward FLOPs per byte (local
                  parts, embedder, entropy model) or per patch (latent); bltx/model/flop_math.py.
  model_flops     a model's flop_terms(seq_len, patch_len) -> {name: FlopTerm}: forward FLOPs
                  per byte by part, summed by the one counter (bltx/eval/flops.py).
  own_loss        nll_sum(ids, targets) -> summed NLL in nats (models with no per-byte
                  distribution, e.g. a BPE-token LM); bltx/train/loss.py scores with it.
  patches         a model's patch(ids, entropies=None, include_next=False) -> starts [B, T]
                  ([B, T+1] with include_next: the last column says whether the byte after the
                  window would open one; a model with no use for it appends False), and a
                  forward that takes them back as `starts=`. The engine patches once, outside
                  autograd, and counts patches (bltx/train/loss.py `model_forward`).
  realised_starts a model whose forward decides its own boundaries (learned chunking) and
                  leaves them as `last_starts` (bool [B, T]): the engine counts patches from
                  those instead of patching first (which would run the encoder twice).
  learned_chunks  a model whose router learns its boundaries: `target_chunk_length` (bytes per
                  chunk the ratio loss aims at; tools/compare.py plans budgets with it) and
                  boundary_probabilities(ids) -> p [B, T] (tools/show_patches.py draws it).
  patcher         a model whose patching is a Patcher component at `.patcher`.
  entropies       a patcher's entropies(ids) -> fp32 [B, T] (task precompute_entropies stores them).
  extras          a model's `aux_losses` and `step_stats`: dicts {name: scalar tensor} that each
                  training forward leaves on the model (set both to {} in __init__). The trainer
                  adds every aux loss to the loss and logs both as window means by name.
  staged_encoder  an encoder's encode_bytes / downsample halves (learned chunking decides
                  boundaries between them; bltx/model/learned_blt.py).
  parallel_plan   a model's parallel_plan() -> bltx.parallel.plans.ParallelPlan (else the plan
                  registered under its name, else a default from its `layers`).
  one_at_a_time   a model that sets generate_one_at_a_time = True: only its last position is a
                  prediction, so generation and CUTE feed it one prompt at a time.
  init_weights    init_weights(): a submodule that initialises itself (bltx/model/init.py).
  tp_attention,   a Llama-style block that tensor parallelism may split has `.attention`
  tp_feed_forward (n_heads, n_kv_heads, nn.Linear wq wk wv wo) and `.feed_forward` (nn.Linear
                  w1 w2 w3); the default plan finds such blocks (bltx/parallel/plans.py).
  cached_step     init_cache / prefill / step: incremental generation (bltx/model/cache.py has
                  each slot's arguments); an encoder also close(), a decoder set_patch();
                  `missing_cached(part, slot)` names what a part lacks.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch

from bltx.errors import ConfigError
# Defined beside the caches it describes; re-exported so this file stays the one to read.
from bltx.model.cache import CachedStep


class FlopTerm(NamedTuple):
    """One part's forward FLOPs per byte; `trained` parts cost 3x in training (forward and
    backward), frozen ones (the entropy model) 1x."""

    per_byte: float
    trained: bool = True


# ---- slots -------------------------------------------------------------------------------


@runtime_checkable
class Patcher(Protocol):
    predicts_next_start: bool  # bltx/patching/base.py: True, the one default

    def __call__(self, ids: torch.Tensor, entropies: torch.Tensor | None = None) -> torch.Tensor: ...

    def init_weights(self) -> None: ...


@runtime_checkable
class ByteEmbedder(Protocol):
    dim: int

    def __call__(self, ids: torch.Tensor) -> torch.Tensor: ...

    def init_weights(self) -> None: ...


@runtime_checkable
class Encoder(Protocol):
    dim: int

    def __call__(self, h: torch.Tensor, patch_ids: torch.Tensor, num_patches: int) -> Any: ...

    def init_weights(self) -> None: ...


@runtime_checkable
class Latent(Protocol):
    dim: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def init_weights(self) -> None: ...


@runtime_checkable
class Decoder(Protocol):
    dim: int

    def __call__(self, h: torch.Tensor, latent: torch.Tensor, patch_ids: torch.Tensor) -> torch.Tensor: ...

    def init_weights(self) -> None: ...


@runtime_checkable
class ByteModel(Protocol):
    def __call__(self, ids: torch.Tensor, **kwargs) -> torch.Tensor: ...

    def init_weights(self) -> None: ...


@runtime_checkable
class DocumentFile(Protocol):
    kind: str  # "raw" for a file that is one document
    num_docs: int

    def __len__(self) -> int: ...

    def read_doc(self, doc: int, lo: int, hi: int) -> np.ndarray: ...


@runtime_checkable
class DataSource(Protocol):
    suffixes: tuple[str, ...]

    def open(self, path: Any, text_field: str, cache: Any) -> DocumentFile: ...


# ---- optional capabilities ---------------------------------------------------------------


@runtime_checkable
class CountsFlops(Protocol):
    def forward_flops(self, seq_len: int, patch_len: float) -> float: ...


@runtime_checkable
class ModelFlops(Protocol):
    def flop_terms(self, seq_len: int, patch_len: float) -> dict[str, FlopTerm]: ...


@runtime_checkable
class OwnLoss(Protocol):
    def nll_sum(self, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Patches(Protocol):
    def patch(self, ids: torch.Tensor, entropies: torch.Tensor | None = None,
              include_next: bool = False) -> torch.Tensor: ...


@runtime_checkable
class RealisedStarts(Protocol):
    last_starts: torch.Tensor | None


@runtime_checkable
class LearnedChunks(Protocol):
    target_chunk_length: float

    def boundary_probabilities(self, ids: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class HasPatcher(Protocol):
    patcher: Patcher


@runtime_checkable
class Entropies(Protocol):
    def entropies(self, ids: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class TrainingExtras(Protocol):
    aux_losses: dict[str, torch.Tensor]
    step_stats: dict[str, torch.Tensor]


@runtime_checkable
class StagedEncoder(Protocol):
    def encode_bytes(self, *args, **kwargs) -> Any: ...

    def downsample(self, *args, **kwargs) -> Any: ...


@runtime_checkable
class OwnParallelPlan(Protocol):
    def parallel_plan(self) -> Any: ...


@runtime_checkable
class InitWeights(Protocol):
    def init_weights(self) -> None: ...


@runtime_checkable
class TPAttention(Protocol):
    n_heads: int
    n_kv_heads: int
    wq: torch.nn.Linear
    wk: torch.nn.Linear
    wv: torch.nn.Linear
    wo: torch.nn.Linear


@runtime_checkable
class TPFeedForward(Protocol):
    w1: torch.nn.Linear
    w2: torch.nn.Linear
    w3: torch.nn.Linear


SLOTS: dict[str, type] = {
    "patcher": Patcher,
    "byte_embedder": ByteEmbedder,
    "encoder": Encoder,
    "latent": Latent,
    "decoder": Decoder,
    "model": ByteModel,
    "data_source": DataSource,
    "document_file": DocumentFile,
}

CAPABILITIES: dict[str, type] = {
    "flops": CountsFlops,
    "model_flops": ModelFlops,
    "own_loss": OwnLoss,
    "patches": Patches,
    "realised_starts": RealisedStarts,
    "learned_chunks": LearnedChunks,
    "patcher": HasPatcher,
    "entropies": Entropies,
    "extras": TrainingExtras,
    "staged_encoder": StagedEncoder,
    "parallel_plan": OwnParallelPlan,
    "init_weights": InitWeights,
    "tp_attention": TPAttention,
    "tp_feed_forward": TPFeedForward,
    "cached_step": CachedStep,
}
# Capabilities declared by a class attribute set to True rather than by methods.
FLAGS: dict[str, str] = {"one_at_a_time": "generate_one_at_a_time"}
# Cached stepping: what a slot needs beyond init_cache / prefill / step (bltx/model/cache.py).
CACHED_EXTRA: dict[str, tuple[str, ...]] = {"encoder": ("close",), "decoder": ("set_patch",)}


def missing(component: Any, contract: type) -> list[str]:
    """Names of the attributes and methods of `contract` that `component` lacks."""
    names = [n for n in getattr(contract, "__protocol_attrs__", ()) if n != "__call__"]
    if not names:  # Python < 3.12: read the contract's own annotations and functions
        names = [n for n in (*contract.__annotations__, *vars(contract)) if not n.startswith("_")]
    return sorted(n for n in set(names) if not hasattr(component, n))


def missing_cached(component: Any, slot: str = "", extra: tuple[str, ...] = ()) -> list[str]:
    """The cached-stepping methods `component` lacks in `slot` (empty: it steps); `extra`
    names methods a particular session needs beyond the slot's (learned chunking's)."""
    needed = (*CACHED_EXTRA.get(slot, ()), *extra)
    return missing(component, CachedStep) + [m for m in needed if not hasattr(component, m)]


def has(component: Any, capability: str) -> bool:
    """Whether `component` offers an optional capability (a key of CAPABILITIES or FLAGS)."""
    if capability in FLAGS:
        return getattr(component, FLAGS[capability], False) is True
    if capability not in CAPABILITIES:
        raise KeyError(f"unknown capability '{capability}'; known: {', '.join(sorted([*CAPABILITIES, *FLAGS]))}")
    return not missing(component, CAPABILITIES[capability])


def check(component: Any, slot: str, where: str, needs: tuple[str, ...] = ()) -> Any:
    """Build-time check: `component` fills `slot` and has each capability in `needs`;
    otherwise one ConfigError line naming the component and what it lacks."""
    lacking = missing(component, SLOTS[slot])
    lacking += [f"capability '{c}'" for c in needs if not has(component, c)]
    if lacking:
        name = component.__name__ if isinstance(component, type) else type(component).__name__
        raise ConfigError(
            f"{where}: {name} does not fulfil the {slot} contract "
            f"(bltx/protocols.py); missing: {', '.join(lacking)}"
        )
    return component
