"""Patchers: decide where patches begin. See `base.Patcher` for the contract."""

from bltx.patching.base import (
    Patcher,
    lengths_to_patch_ids,
    lengths_to_starts,
    starts_to_lengths,
    starts_to_patch_ids,
)

__all__ = [
    "Patcher",
    "lengths_to_patch_ids",
    "lengths_to_starts",
    "starts_to_lengths",
    "starts_to_patch_ids",
]
