"""Speculative decoding with the entropy model as the draft (one row at a time).

The entropy patcher already steps a byte LM over every byte; its next-byte logits are the
draft. A round: the next byte x0 is chosen exactly (from the model's logits, or the previous
round's correction); the patcher steps x0 and then drafts d1..dm from its own logits, stopping
after k drafts or at the first draft after which a patch opens (low entropy, where drafts are
good, is exactly where no patch closes). All of x0, d1..d(m-1) then read the same patch, so
one multi-byte pass of embedder, encoder and decoder (the BLT session's `extend`) gives the model's
logits for every draft. The longest agreeing prefix is kept (greedy: equal to the argmax;
sampling: accepted with probability min(1, p/q), the first rejection resampled from
max(p - q, 0) normalised), which leaves the output distribution that of the model alone, and
the caches roll back past the rejected drafts: stacks rewind their positions (windowed rings
keep spare slots, bltx/model/cache.py), the patcher state is restored from a per-draft
snapshot, the embedder's context is restored and re-stepped over the kept bytes.
"""

from __future__ import annotations

import torch

from bltx.infer.sampling import mask_special, sample_next, sampling_probs
from bltx.model.cache import SPARE, PatchState, StackCache
from bltx.protocols import has


def snapshot(obj):
    """Copies of a cache structure's small mutable parts: tensors, and StackCache positions."""
    if isinstance(obj, StackCache):
        return obj.pos.clone()
    if isinstance(obj, torch.Tensor):
        return obj.clone()
    if isinstance(obj, dict):
        return {key: snapshot(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [snapshot(value) for value in obj]
    if isinstance(obj, PatchState):
        return {"pos": obj.pos.clone(), "last_start": obj.last_start.clone(), "extra": snapshot(obj.extra)}
    return obj


def restore(obj, saved):
    if isinstance(obj, StackCache):
        obj.pos.copy_(saved)
    elif isinstance(obj, dict):
        for key in saved:
            if isinstance(obj.get(key), torch.Tensor) and isinstance(saved[key], torch.Tensor):
                obj[key] = saved[key].clone()  # steps may replace these tensors, not mutate them
            else:
                restore(obj[key], saved[key])
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            if isinstance(value, torch.Tensor):
                value.copy_(saved[i])
            else:
                restore(value, saved[i])
    elif isinstance(obj, PatchState):
        obj.pos.copy_(saved["pos"])
        obj.last_start.copy_(saved["last_start"])
        restore(obj.extra, saved["extra"])


def rewind_stacks(obj, by: int) -> None:
    """Move every StackCache in a cache structure back `by` positions."""
    if isinstance(obj, StackCache):
        obj.pos.sub_(by)
    elif isinstance(obj, dict):
        for value in obj.values():
            rewind_stacks(value, by)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            rewind_stacks(value, by)


def speculative_support(model) -> str | None:
    from bltx.patching.entropy import EntropyPatcher

    patcher = model.patcher if has(model, "patcher") else None
    if not isinstance(patcher, EntropyPatcher) or not patcher.online_steps:
        return "speculative decoding drafts with an entropy patcher's model (this model has none)"
    return None


class SpeculativeStats:
    def __init__(self):
        self.drafted = 0
        self.accepted = 0
        self.rounds = 0

    @property
    def acceptance(self) -> float:
        return self.accepted / max(self.drafted, 1)


def _accept(drafts, qs, logits, sampling, generator):
    """Accepted draft count and the correction (None when all are accepted)."""
    for i, d in enumerate(drafts):
        p_logits = logits[:, i]
        if sampling.temperature == 0.0:
            best = mask_special(p_logits.float(), sampling.allow_eos).argmax(-1)
            if int(best) != d:
                return i, best
            continue
        p = sampling_probs(p_logits, sampling)[0]
        q = qs[i][0]
        u = torch.rand((), generator=generator, device=p.device)
        if u * q[d] > p[d]:  # rejected: u >= min(1, p/q)
            residual = (p - q).clamp(min=0)
            if residual.sum() <= 0:
                residual = p
            return i, torch.multinomial(residual / residual.sum(), 1, generator=generator)
    return len(drafts), None


@torch.no_grad()
def generate_speculative(model, prompt, max_new_bytes, sampling, stop, generator, on_byte, k, stats=None):
    """One prompt (ids [T]) -> new ids; same greedy bytes as `_generate_cached`."""
    if not 1 <= k <= SPARE:
        raise ValueError(f"speculative_k must be in [1, {SPARE}], got {k}")
    stats = stats if stats is not None else SpeculativeStats()
    device = next(model.parameters()).device
    capacity = len(prompt) + max_new_bytes + k + 1  # drafts may run past the last byte kept
    session = model.new_session(1, capacity)
    logits = session.prefill(prompt.to(device)[None], torch.tensor([len(prompt)], device=device))
    state, caches = session.patching, session.caches
    out: list[int] = []

    def emit(byte: int) -> bool:
        out.append(byte)
        if on_byte is not None:
            on_byte(0, byte)
        stop.update(0, byte)
        return stop.all_done or len(out) >= max_new_bytes

    def feed_last(byte: torch.Tensor, closing_start: torch.Tensor, opens: bool):
        """A byte the patcher has stepped, through the model: the session's own bookkeeping."""
        session.feed_model(byte, closing_start)
        session.advance(torch.tensor([opens], device=device), [int(opens)])
        return session.decode()

    pending = None
    while True:
        x0 = pending if pending is not None else sample_next(logits, sampling, generator)
        pending = None
        if emit(int(x0)):
            break
        start = state.last_start.clone()
        opens = bool(model.patcher.step_state(x0, state))
        budget = min(k, max_new_bytes - len(out))
        if opens or budget == 0:
            logits = feed_last(x0, start, opens)
            continue
        # Draft from the patcher's logits until a patch would open or k drafts are made.
        snaps, drafts, qs, flags = [snapshot(state)], [], [], []
        while len(drafts) < budget:
            q_logits = state.extra["logits"]
            if sampling.temperature == 0.0:
                d = mask_special(q_logits.float(), sampling.allow_eos).argmax(-1)
            else:
                qs.append(sampling_probs(q_logits, sampling))
                d = torch.multinomial(qs[-1], 1, generator=generator)[:, 0]
            flag = bool(model.patcher.step_state(d, state))
            drafts.append(int(d))
            flags.append(flag)
            snaps.append(snapshot(state))
            if flag:
                break
        m = len(drafts)
        ids = torch.tensor([[int(x0)] + drafts[:-1]], device=device)
        embed_before = snapshot(caches["byte_embedder"])
        verify = session.extend(ids)  # [1, m, V]: the model's logits for d1..dm
        accepted, correction = _accept(drafts, qs, verify, sampling, generator)
        stats.rounds += 1
        stats.drafted += m
        stats.accepted += accepted
        done = False
        for d in drafts[:accepted]:
            if emit(d):
                done = True
                break
        if done:
            break
        if correction is None:
            # All kept: x0, d1..d(m-1) are in the open patch; the last draft is fed like a
            # plain byte (it may close the patch), from the patch start before its step.
            session.run[0] += m
            logits = feed_last(torch.tensor([drafts[-1]], device=device), snaps[-2]["last_start"], flags[-1])
            continue
        # Rejected at draft accepted+1: keep x0, d1..d_accepted; the correction comes next.
        session.run[0] += accepted + 1
        rewind_stacks(caches["encoder"], m - accepted - 1)
        rewind_stacks(caches["decoder"], m - accepted - 1)
        restore(caches["byte_embedder"], embed_before)
        session.model.byte_embedder.step(ids[:, : accepted + 1], caches["byte_embedder"])
        restore(state, snaps[accepted])
        pending = correction.reshape(1)
    return torch.tensor(out, dtype=torch.long)
