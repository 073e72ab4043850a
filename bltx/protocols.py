"""The written contracts: what a component must offer to fill a slot of a model, and the
optional capabilities the engine uses when a component has them. A plugin author reads this
file to know what to implement; `check` runs once at build time and names what is missing.

Every component is an `nn.Module` registered by name (`@register(kind, name)`) with a
nested `@dataclass Config`, built as `cls(cfg, **context)` (context: the sizes and objects
the parent passes by keyword, e.g. `latent_dim`, `backend`; accept `**context` for the rest).
Shapes: B batch, T bytes, P patches (the batch's real patch count in eager forwards; a
static bound only where a caller compiles a whole forward).

Required, per slot (and of every part: `init_weights()`, called after a meta-device build,
and `forward_flops(seq_len, patch_len)`, the `flops` capability below):
  Patcher        (ids [B, T], entropies=None) -> starts bool [B, T]; True where a patch
                 begins, decided from ids[<= t] only (bltx/patching/base.py is the base class).
  ByteEmbedder   .dim; (ids [B, T]) -> h [B, T, dim].
  Encoder        .dim; (h [B, T, dim], patch_ids [B, T], P) -> (h [B, T, dim], patches [B, P, latent_dim]).
  StagedEncoder  an encoder in two halves, for learned chunking (the router reads the byte
                 states between them): encode_bytes(h) -> h; downsample(h, patch_ids, P) -> chunks.
  Latent         .dim; (x [B, P, dim]) -> [B, P, dim], causal over P.
  Chunker        .target_length (bytes per chunk it aims at); probabilities(h [B, T, d]) -> p [B, T];
                 dechunk(zhat, p, starts, patch_ids, first) -> (z, u); aux(p, starts) ->
                 (aux_losses, stats) (bltx/model/chunking.py is the reference).
  Decoder        .dim; (h [B, T, dim], latent [B, P, latent_dim], patch_ids [B, T]) -> logits [B, T, 260].
  ByteModel      (ids [B, T], targets=None, *, entropies=None, starts=None) -> ModelOutput
                 (bltx/model/output.py): logits, or with targets their summed NLL; the starts
                 it used; aux losses and stats. Byte-latent models derive from
                 bltx/model/assembly.py `ByteLatentModel`, which builds and checks the parts.
  DataSource     a `data_source` reader: .suffixes (file endings it claims under type "auto") and
                 open(path, text_field, cache_dir) -> DocumentFile: .kind, .num_docs, len() (text
                 bytes), read_doc(doc, lo, hi) -> uint8 bytes [lo, hi) of one document; a file of
                 several documents also has .index (bltx/data/doc_index.py, its lengths).

Optional capabilities, a name each (asked by `has(obj, name)`, required by `check(...,
needs=)`; never by ad-hoc getattr):
  flops           forward_flops(seq_len, patch_len) -> float: a part's forward FLOPs per byte
                  (local parts, embedder, entropy model) or per patch (latent); required of
                  every model part; bltx/model/flop_math.py has the formulas.
  model_flops     a model's flop_terms(seq_len, patch_len) -> {name: FlopTerm}: forward FLOPs
                  per byte by part, summed by the one counter (bltx/eval/flops.py).
  patches         a model's patch(ids, entropies=None, include_next=False) -> starts [B, T]
                  ([B, T+1] with include_next): its patching without a forward (statistics,
                  FLOP planning, pictures); the forward returns the starts it used anyway.
  patcher         a model whose patching is a Patcher component at `.patcher`.
  entropies       a patcher's entropies(ids) -> fp32 [B, T] (task precompute_entropies stores them).
  learned_chunks  a model whose router learns its boundaries: `target_chunk_length` (bytes per
                  chunk the ratio loss aims at; tools/compare.py plans budgets with it) and
                  boundary_probabilities(ids) -> p [B, T] (tools/show_patches.py draws it).
  sessions        a model's new_session(batch, capacity, compiled) -> a cached generation session
                  (bltx/model/sessions/) and session_unsupported() -> None or the reason.
  parallel_plan   a model's parallel_plan() -> bltx.parallel.plans.ParallelPlan (else the plan
                  registered under its name, else a default from its `layers`).
Cached stepping is asked per slot, not by a name: `missing_cached(part, slot)` lists what a
part lacks of init_cache / prefill / step (bltx/model/cache.py has each slot's arguments;
an encoder also close(), a decoder set_patch(); a latent's step takes `bound=None`).
A flag: `predicts_whole_tokens = True` on a model that scores whole subword tokens (the BPE
baseline): its last position is its only exact prediction, so CUTE feeds it one prompt at a
time (right-padded generation reads each prompt's own last row: the padding ends the prompt's
last token, tests/model/test_baselines.py), and it cannot leave single target bytes out of its loss, so it trains
on plain text only (bltx/train/data_checks.py).
A flag: `logits_given_boundary = True` on a model whose logits are the next byte given the
patch boundary it realised, the boundary's own probability being in its `nll` only (the
byteified model models the boundary before the byte): exact log-likelihoods of given bytes
come from `nll`, and the lm-eval adapter scores such a model through it, row by row; its
logits at a row's last byte are the byte given the boundary its head decides there, so
generation by recomputation reads it row by row, unpadded (bltx/infer/recompute.py).

Structures the default parallel plan recognises (isinstance, not capabilities): a Llama-style
block that tensor parallelism may split has `.attention` (TPAttention: n_heads, n_kv_heads,
nn.Linear wq wk wv wo) and `.feed_forward` (TPFeedForward: nn.Linear w1 w2 w3); a module
with `init_weights()` initialises itself (InitWeights; bltx/model/init.py).
"""

from __future__ import annotations

import inspect
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
class StagedEncoder(Protocol):
    dim: int

    def encode_bytes(self, h: torch.Tensor) -> torch.Tensor: ...

    def downsample(self, h: torch.Tensor, patch_ids: torch.Tensor, num_patches: int) -> torch.Tensor: ...

    def init_weights(self) -> None: ...


@runtime_checkable
class Chunker(Protocol):
    target_length: float

    def probabilities(self, h: torch.Tensor) -> torch.Tensor: ...

    def dechunk(self, zhat: torch.Tensor, p: torch.Tensor, starts: torch.Tensor, patch_ids: torch.Tensor,
                first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def aux(self, p: torch.Tensor, starts: torch.Tensor) -> tuple[dict, dict]: ...

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
    def __call__(self, ids: torch.Tensor, targets: torch.Tensor | None = None, **kwargs) -> Any: ...

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
class Patches(Protocol):
    def patch(self, ids: torch.Tensor, entropies: torch.Tensor | None = None,
              include_next: bool = False) -> torch.Tensor: ...


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
class Sessions(Protocol):
    def new_session(self, batch: int, capacity: int, compiled: bool = False) -> Any: ...

    def session_unsupported(self) -> str | None: ...


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
    "staged_encoder": StagedEncoder,
    "latent": Latent,
    "chunker": Chunker,
    "decoder": Decoder,
    "model": ByteModel,
    "data_source": DataSource,
    "document_file": DocumentFile,
}

CAPABILITIES: dict[str, type] = {
    "flops": CountsFlops,
    "model_flops": ModelFlops,
    "patches": Patches,
    "patcher": HasPatcher,
    "entropies": Entropies,
    "learned_chunks": LearnedChunks,
    "sessions": Sessions,
    "parallel_plan": OwnParallelPlan,
}
# Capabilities declared by a class attribute set to True rather than by methods.
FLAGS: dict[str, str] = {"whole_tokens": "predicts_whole_tokens", "boundary_in_nll": "logits_given_boundary"}
# What to do about a slot's contract failing, where there is a built-in that fills it.
SLOT_FIXES: dict[str, str] = {
    "staged_encoder": "learned chunking reads the encoder's byte states between two stages; "
                      "use type = \"byte_layers\"",
}
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


def _signatures(contract: type, component: Any) -> str:
    """What `component` lacks of `contract`, as the calls to write: `forward_flops(seq_len,
    patch_len)`, or an attribute's name."""
    out = []
    for name in missing(component, contract):
        fn = getattr(contract, name, None)
        if callable(fn):
            params = [p for p in inspect.signature(fn).parameters if p != "self"]
            out.append(f"{name}({', '.join(params)})")
        else:
            out.append(name)
    return ", ".join(out)


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
    lacking += [f"capability '{c}' ({_signatures(CAPABILITIES[c], component)})" for c in needs if not has(component, c)]
    if lacking:
        name = component.__name__ if isinstance(component, type) else type(component).__name__
        raise ConfigError(
            f"{where}: {name} does not fulfil the {slot} contract "
            f"(bltx/protocols.py); missing: {', '.join(lacking)}"
            + (f" ({SLOT_FIXES[slot]})" if slot in SLOT_FIXES else "")
        )
    return component
