"""Before step 1: can this model train on what `[data]` gives it? One line each, exit 2.

- Fine-tuning examples (`data.records` other than "text") have targets set to IGNORE_ID
  (bltx/bytes.py); a model that scores whole tokens (the `whole_tokens` flag,
  bltx/protocols.py) cannot leave them out.
- `data.document_mask` passes `doc_ids` to the model's forward; a model (or, for a BLT,
  one of its parts) whose forward does not take it cannot keep attention inside examples.
"""

from __future__ import annotations

import inspect

from bltx.errors import ConfigError
from bltx.protocols import has
from bltx.sections import DataConfig


def check_model_for_data(model, cfg: DataConfig) -> None:
    name = type(model).__name__
    if cfg.records != "text" and has(model, "whole_tokens"):
        raise ConfigError(f"data.records = {cfg.records!r}: model {name} scores whole tokens, so it "
                          f"cannot leave prompt bytes and padding out of the loss; use a next-byte model")
    if not cfg.document_mask:
        return
    if "doc_ids" not in inspect.signature(model.forward).parameters:
        raise ConfigError(f"data.document_mask = true: model {name} takes no doc_ids; set "
                          f"data.document_mask = false")
    blocker = model.document_mask_blocker() if hasattr(model, "document_mask_blocker") else None
    if blocker:
        raise ConfigError(f"data.document_mask = true: {blocker} takes no doc_ids, so attention would cross "
                          f"examples; give its forward a doc_ids keyword or set data.document_mask = false")
