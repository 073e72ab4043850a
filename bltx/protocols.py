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
All modules with weights implement `init_weights()` (called after meta-device build).

Optional capabilities (checked by `has` / `check`, never by ad-hoc getattr):
  CountsFlops   forward_flops(seq_len, patch_len) -> float: forward FLOPs per byte (local
                parts, embedder, entropy model) or per patch (latent); bltx/model/flop_math.py.
  ByteModel     flop_terms(seq_len, patch_len) -> {name: FlopTerm}: forward FLOPs per byte by
                part, summed by the one counter (bltx/eval/flops.py).
  OwnLoss       nll_sum(ids, targets) -> summed NLL in nats (models with no per-byte
                distribution, e.g. a BPE-token LM); bltx/train/loss.py uses it when present.
  Patches       patch(ids, entropies=None[, include_next]) -> starts: a model that patches,
                so the engine can count patches.
  CachedStep    init_cache / prefill / step: incremental generation (bltx/model/cache.py).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch

from bltx.errors import ConfigError


class FlopTerm(NamedTuple):
    """One part's forward FLOPs per byte; `trained` parts cost 3x in training (forward and
    backward), frozen ones (the entropy model) 1x."""

    per_byte: float
    trained: bool = True


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
    def patch(self, ids: torch.Tensor, entropies: torch.Tensor | None = None) -> torch.Tensor: ...


# Cached stepping is defined by the generation work in bltx/model/cache.py; until that module
# exists, a component steps when it has these three methods.
CACHE_METHODS = ("init_cache", "prefill", "step")
try:  # re-export, so this file stays the one place a plugin author reads
    from bltx.model.cache import *  # noqa: F401,F403
except ImportError:
    pass


def steps_cached(component: Any) -> bool:
    """True when `component` implements the cached-stepping capability."""
    return all(callable(getattr(component, name, None)) for name in CACHE_METHODS)


SLOTS: dict[str, type] = {
    "patcher": Patcher,
    "byte_embedder": ByteEmbedder,
    "encoder": Encoder,
    "latent": Latent,
    "decoder": Decoder,
    "model": ByteModel,
}

CAPABILITIES: dict[str, type] = {
    "flops": CountsFlops,
    "model_flops": ModelFlops,
    "own_loss": OwnLoss,
    "patches": Patches,
}


def missing(component: Any, contract: type) -> list[str]:
    """Names of the attributes and methods of `contract` that `component` lacks."""
    names = [n for n in getattr(contract, "__protocol_attrs__", ()) if n != "__call__"]
    if not names:  # Python < 3.12: read the contract's own annotations and functions
        names = [n for n in (*contract.__annotations__, *vars(contract)) if not n.startswith("_")]
    return sorted(n for n in set(names) if not hasattr(component, n))


def has(component: Any, capability: str) -> bool:
    """Whether `component` offers an optional capability (a key of CAPABILITIES, or
    "cached_step")."""
    if capability == "cached_step":
        return steps_cached(component)
    return not missing(component, CAPABILITIES[capability])


def check(component: Any, slot: str, where: str, needs: tuple[str, ...] = ()) -> Any:
    """Build-time check: `component` fills `slot` and has each capability in `needs`;
    otherwise one ConfigError line naming the component and what it lacks."""
    lacking = missing(component, SLOTS[slot])
    lacking += [f"capability '{c}'" for c in needs if not has(component, c)]
    if lacking:
        raise ConfigError(
            f"{where}: {type(component).__name__} does not fulfil the {slot} contract "
            f"(bltx/protocols.py); missing: {', '.join(lacking)}"
        )
    return component
