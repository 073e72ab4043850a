"""A bltx model as an lm-evaluation-harness language model (`lm_eval.api.model.LM`).

Bytes are the tokens: a text is its UTF-8 bytes (id = byte + 4), after BOS when the model
was trained with `data.add_bos` (the context of an empty prompt is then BOS alone).

- `loglikelihood(context, continuation)`: the sum over the continuation's bytes of
  log p(byte | everything before it), and whether greedy decoding would produce each byte.
  Inputs longer than `max_length` bytes are cut from the left (the continuation is kept).
- `loglikelihood_rolling(text)`: the log-probability of all the text's bytes, in windows
  of `max_length` that each give every scored byte as much context as fits.
- `generate_until(context, gen_kwargs)`: the cached generator (bltx/infer/generate.py),
  greedy unless `do_sample`, stopped at any `until` string (cut from the answer), EOS or
  `max_gen_toks` bytes; the context is cut from the left to leave room for those bytes.

Requests are scored in batches of `batch_size`, longest first, padded on the right (the
model is causal, patcher included, so padding after a sequence cannot change its scores).
A model whose logits leave out the probability of the patch boundary it realised (the
`boundary_in_nll` flag, bltx/protocols.py: the byteified model) is scored through its own
`nll` instead, one request at a time, unpadded, with only the continuation's bytes as
targets: the log-probability eval's bpb counts, boundaries included (exact with predicted
boundaries; with the tokenizer's, which look ahead, a bound as the source's token NLL is),
and it is greedy where the cached generator, deciding each boundary before its byte,
produces the continuation.
"""

from __future__ import annotations

import json

import torch
from lm_eval.api.model import LM

from bltx.bytes import BOS_ID, EOS_ID, IGNORE_ID, OFFSET, decode
from bltx.infer.generate import generate
from bltx.infer.sampling import SamplingConfig
from bltx.protocols import has
from bltx.train.loss import autocast_context


def byte_ids(text: str) -> list[int]:
    return [b + OFFSET for b in text.encode("utf-8")]


class BltxLM(LM):
    """lm-eval's view of a trained bltx model (on its device, in eval mode)."""

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype: str = "float32",
                 batch_size: int = 8, max_length: int = 512, add_bos: bool = True, seed: int = 0):
        super().__init__()
        self.model = model.eval()
        self._device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_length = max_length
        self.prefix = [BOS_ID] if add_bos else [EOS_ID]  # what an empty context predicts from
        self.seed = seed

    # ---- scoring -------------------------------------------------------------------------

    @torch.no_grad()
    def score(self, items: list[tuple[list[int], int]]) -> list[tuple[float, bool]]:
        """Each item is (ids, n): the log-probability of the last n ids of `ids` given the
        ones before, and whether each is the argmax. Batched, longest first."""
        if has(self.model, "boundary_in_nll"):
            return [self._score_through_nll(seq, n) for seq, n in items]
        results: list[tuple[float, bool] | None] = [None] * len(items)
        order = sorted(range(len(items)), key=lambda i: -len(items[i][0]))
        for lo in range(0, len(order), self.batch_size):
            chunk = order[lo : lo + self.batch_size]
            width = max(len(items[i][0]) for i in chunk) - 1
            ids = torch.zeros(len(chunk), width, dtype=torch.long)  # right-padded with PAD (0)
            for row, i in enumerate(chunk):
                seq = items[i][0]
                ids[row, : len(seq) - 1] = torch.tensor(seq[:-1])
            with autocast_context(self._device, self.dtype):
                logits = self.model(ids.to(self._device)).logits
            logp = torch.log_softmax(logits.float(), dim=-1).cpu()
            for row, i in enumerate(chunk):
                seq, n = items[i]
                end = len(seq) - 1
                targets = torch.tensor(seq[end - n + 1 :])
                rows = logp[row, end - n : end]
                picked = rows.gather(1, targets[:, None]).squeeze(1)
                results[i] = (float(picked.double().sum()), bool((rows.argmax(-1) == targets).all()))
        return results  # type: ignore[return-value]

    def _score_through_nll(self, seq: list[int], n: int) -> tuple[float, bool]:
        """(ids, n) scored by a `boundary_in_nll` model (module doc): -nll of the last n ids
        of `seq`, unpadded, and whether greedy decoding after the ones before gives them (the
        cached generator: boundary first, then the byte, as the model decodes)."""
        if n == 0:
            return 0.0, True
        ids = torch.tensor([seq[:-1]], device=self._device)
        targets = torch.tensor([[IGNORE_ID] * (len(seq) - 1 - n) + seq[len(seq) - n :]], device=self._device)
        with autocast_context(self._device, self.dtype):
            logprob = -float(self.model(ids, targets).nll)
        # Outside autocast, as generate_until calls it: the caches hold the model's own dtype.
        greedy = generate(self.model, [torch.tensor(seq[:-n])], n, compile=False)[0]
        return logprob, greedy.tolist() == seq[len(seq) - n :]

    def _pair(self, context: str, continuation: str) -> tuple[list[int], int]:
        ctx, cont = self.prefix + byte_ids(context), byte_ids(continuation)
        seq = (ctx + cont)[-(self.max_length + 1) :]
        return seq, min(len(cont), self.max_length)

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        items = [self._pair(*req.args) for req in requests]
        out = self.score(items)
        for req, res in zip(requests, out):
            self.cache_hook.add_partial("loglikelihood", req.args, res)
        return out

    def _rolling_windows(self, text: str) -> list[tuple[list[int], int]]:
        tokens = self.prefix + byte_ids(text)
        windows = []
        for start in range(1, len(tokens), self.max_length):
            end = min(start + self.max_length, len(tokens))
            windows.append((tokens[max(0, end - 1 - self.max_length) : end], end - start))
        return windows

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        per_request = [self._rolling_windows(req.args[0]) for req in requests]
        flat = self.score([w for windows in per_request for w in windows])
        out, pos = [], 0
        for req, windows in zip(requests, per_request):
            total = sum(lp for lp, _ in flat[pos : pos + len(windows)])
            pos += len(windows)
            out.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return out

    # ---- generation ----------------------------------------------------------------------

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):  # one sampling setup per generate() call
            groups.setdefault(json.dumps(req.args[1], sort_keys=True, default=str), []).append(i)
        for indices in groups.values():
            kwargs = dict(requests[indices[0]].args[1])
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kwargs.pop("max_gen_toks", 256))
            sampling = SamplingConfig(
                temperature=float(kwargs.get("temperature", 0.0)) if kwargs.get("do_sample") else 0.0,
                top_k=int(kwargs.get("top_k") or 0), top_p=float(kwargs.get("top_p") or 1.0),
            )
            keep = max(1, self.max_length - max_new)
            for lo in range(0, len(indices), self.batch_size):
                chunk = indices[lo : lo + self.batch_size]
                prompts = [torch.tensor((self.prefix + byte_ids(requests[i].args[0]))[-keep:]) for i in chunk]
                generated = generate(self.model, prompts, max_new, sampling=sampling, stop=until, seed=self.seed)
                for i, ids in zip(chunk, generated):
                    text = decode(ids)
                    for stop in until:
                        if stop and stop in text:
                            text = text[: text.index(stop)]
                    out[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return out  # type: ignore[return-value]
