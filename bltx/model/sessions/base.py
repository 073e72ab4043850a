"""What every cached session shares: the caches of its stepped `PARTS`, the protocol check,
the latent's bounded step, and its per-byte `COMPILED` methods under torch.compile."""

from __future__ import annotations

import functools

import torch

from bltx.protocols import missing_cached

_COMPILED: dict = {}


def compiled_step(fn, device: torch.device):
    """`fn` under torch.compile, built once per function and device type (dynamo's graph
    cache is per code object, so later sessions reuse the graphs). CUDA: CUDA graphs
    ("reduce-overhead"); elsewhere inductor's fused kernels. Static shapes: a new shape is a
    new graph, never a dynamic one."""
    key = (fn, device.type)
    if key not in _COMPILED:
        mode = "reduce-overhead" if device.type == "cuda" else None
        _COMPILED[key] = torch.compile(fn, mode=mode, dynamic=False)
    return _COMPILED[key]


def span_bucket(length: int, capacity: int) -> int:
    """How many positions a step reads for `length` needed ones: the next power of two (at
    least 4, at most the capacity), so a compiled step sees few distinct shapes."""
    return min(max(4, 1 << (length - 1).bit_length()), capacity)


class CachedSession:
    PARTS: tuple[str, ...] = ()
    EXTRA: dict[str, tuple[str, ...]] = {}  # methods a part needs beyond the CachedStep contract
    COMPILED: tuple[str, ...] = ()

    @classmethod
    def unsupported(cls, model) -> str | None:
        """None when every stepped part of `model` has the cache protocol, else which lacks what."""
        for name in cls.PARTS:
            part = model.get_submodule(name)
            lacking = missing_cached(part, extra=cls.EXTRA.get(name, ()))
            if lacking:
                return f"model.{name} ({type(part).__name__}) has no cache protocol (missing {', '.join(lacking)})"
        return None

    def __init__(self, model, batch: int, capacity: int, compiled: bool = False):
        reason = model.session_unsupported()
        if reason is not None:
            raise ValueError(f"cached generation unavailable: {reason}")
        self.model = model
        self.batch = batch
        self.capacity = capacity
        self.device = next(model.parameters()).device
        self.caches = {name: getattr(model, name).init_cache(batch, capacity) for name in self.PARTS}
        self.h = None  # the fed byte's encoder state, read by decode
        if compiled:
            # The per-byte steps have fixed shapes and update caches in place, so one graph
            # each serves every byte; a step taking a span or bound makes one per power of two.
            for name in self.COMPILED:
                # The function under its no_grad decorator: the decorator's wrapper is one code
                # object for all of them, and dynamo's per-code graph limit would then be shared.
                fn = compiled_step(getattr(type(self), name).__wrapped__, self.device)
                setattr(self, name, torch.no_grad()(functools.partial(fn, self)))

    def step_latent(self, x: torch.Tensor, opens: torch.Tensor, bound: int | None) -> torch.Tensor:
        """The latent's step on new patch/chunk states `x` for rows `opens`, reading `bound` >
        every row's count (a latent without attention ignores it)."""
        return self.model.latent.step(x, self.caches["latent"], opens, bound=bound)

    # The decoding interface (bltx/model/sessions/__init__.py); subclasses implement it.
    def prefill(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def feed(self, ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def advance(self, opens: torch.Tensor, flags: list[int]) -> None:
        raise NotImplementedError

    def decode(self) -> torch.Tensor:
        raise NotImplementedError
