"""Cached generation sessions: one per model type, chosen by the model (`model.new_session`).

A session steps every part of its model through the part's cache protocol
(bltx/model/cache.py) in the order of the model's forward, and keeps the host-side patch
bookkeeping, so the decoding loops in bltx/infer/ (greedy, sampled, batched, speculative)
share one interface and never ask what kind of model they drive:

    session = model.new_session(batch, capacity, compiled)   # or model.session_unsupported()
    logits = session.prefill(ids, lengths)     # right-padded prompts -> [B, 260]
    opens = session.feed(next_ids)             # [B] bool: a boundary after (BLT) / at (learned)
    session.advance(opens, flags)              # flags: `opens` on the host; the boundary work
    logits = session.decode()                  # next-byte logits [B, 260]
"""
