"""The source's vocabulary as a byteified model needs it, on bltx ids (byte + OFFSET, the
four special ids below): its tokenizer's boundaries over any window of ids, the token each
patch spells (else the longest token ending at its last byte), and the prefix trie the exact
distillation targets are read from (bltx/interop/byteify/teacher.py).

    vocab = SourceVocab(SourceTokenizer(folder))
    starts = vocab.token_starts(ids_row)            # bool [T]: the tokenizer's boundaries
    info = vocab.describe(ids, starts)              # token per patch, trie node per byte, ...

Special ids are patches of their own: BOS reads as the source's BOS (or EOS) token, EOS as
its EOS token, PAD as none. Bytes that are not valid UTF-8 (a window cut inside a
character, binary data) are tokenized as their single-byte tokens, which byte-level BPE
always has, so every window of ids has a segmentation into source tokens.

The trie: the vocabulary's byte tokens sorted by their bytes, so the tokens extending a
prefix are a contiguous range [lo, hi) of that order; node n is a prefix, `token_at[n]`
the token spelling exactly it (-1: none), and its children are the edges
[edge_lo[n], edge_lo[n] + fanout[n]) of `edge_byte` / `edge_node` (a CSR layout: memory
grows with the vocabulary's bytes, not with 256 per node).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bltx.bytes import BOS_ID, EOS_ID, OFFSET, VOCAB_SIZE
from bltx.interop.source_tokenizer import SourceTokenizer


@dataclass
class WindowTokens:
    """What the host knows of a batch of windows, as tensors on the model's device."""

    patch_token: torch.Tensor     # long [B, P]: the source token each patch spells (-1: none)
    # long [B, P]: the source token whose embedding is added to each patch (the subword
    # embedding): the token the patch spells, else the longest one ending at its last byte (-1: none)
    subword_token: torch.Tensor
    node: torch.Tensor            # long [B, T]: trie node of the bytes from the patch start to t (-1: none)


class SourceVocab:
    def __init__(self, tokenizer: SourceTokenizer):
        self.tokenizer = tokenizer
        token_bytes = tokenizer.token_bytes
        self.vocab_size = len(token_bytes)
        self.single = [-1] * 256  # byte -> its single-byte token
        self.of_bytes: dict[bytes, int] = {}
        for i, data in enumerate(token_bytes):
            if data:
                self.of_bytes.setdefault(data, i)
                if len(data) == 1:
                    self.single[data[0]] = i
        specials = tokenizer.tokenizer.get_vocab(with_added_tokens=True)
        self.eos_token = _first_present(specials, ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>"))
        bos = _first_present(specials, ("<|begin_of_text|>", "<s>", "<bos>"))
        self.bos_token = bos if bos is not None else self.eos_token
        self.max_token_bytes = max((len(b) for b in token_bytes if b), default=1)
        self._build_trie(token_bytes)

    # -- boundaries ---------------------------------------------------------------------------

    def tokens(self, data: bytes) -> list[int]:
        """Source token ids spelling `data` exactly (invalid UTF-8 as single-byte tokens)."""
        out: list[int] = []
        while data:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as bad:
                if bad.start:
                    out += self.tokenizer.encode(data[: bad.start].decode("utf-8"))
                out += [self.single[b] for b in data[bad.start: bad.end]]
                data = data[bad.end:]
                continue
            out += self.tokenizer.encode(text)
            break
        return out

    def token_starts(self, ids: np.ndarray) -> np.ndarray:
        """bool [T] for one row of bltx ids: the source tokenizer's token starts, each
        special id a patch of its own."""
        starts = np.zeros(len(ids), dtype=bool)
        special = np.flatnonzero(ids < OFFSET)
        cuts = [-1, *special.tolist(), len(ids)]
        for a, b in zip(cuts[:-1], cuts[1:]):
            if a >= 0:
                starts[a] = True
            lo = a + 1
            if b > lo:
                lengths = [len(self.tokenizer.token_bytes[i]) for i in self.tokens(bytes((ids[lo:b] - OFFSET).tolist()))]
                starts[lo + np.cumsum([0, *lengths[:-1]])] = True
        return starts

    def keep_in_vocabulary(self, ids: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Predicted boundaries made to keep every patch a vocabulary-token prefix: for one
        row, ids [T+1] (the byte after the window last), ends bool [T] -> ends with byte t
        also ending its patch where no token extends the patch with byte t+1, and around
        special ids (each a patch of its own). A function of the bytes up to t+1, like the
        predictor: one byte of lookahead."""
        out = ends.copy()
        children = self._children
        node = -1
        for t in range(len(out)):
            v, nxt = int(ids[t]), int(ids[t + 1])
            if v < OFFSET:
                out[t] = True
                node = -1
                continue
            if t == 0 or out[t - 1]:
                node = children[0].get(v - OFFSET, -1)
            elif node >= 0:
                node = children[node].get(v - OFFSET, -1)
            if nxt < OFFSET or node < 0 or (nxt - OFFSET) not in children[node]:
                out[t] = True
        return out

    # -- what each patch and byte is, for one batch ------------------------------------------

    def describe(self, ids: torch.Tensor, starts: torch.Tensor, num_patches: int) -> WindowTokens:
        """ids [B, T], starts bool [B, T] -> WindowTokens (host work: one pass over the bytes)."""
        B, T = ids.shape
        ids_h, starts_h = ids.tolist(), starts.tolist()
        patch_token = np.full((B, num_patches), -1, dtype=np.int64)
        ending = np.full((B, num_patches), -1, dtype=np.int64)
        node = np.full((B, T), -1, dtype=np.int64)
        children, token_at = self._children, self.token_at_list
        for b in range(B):
            row, srow = ids_h[b], starts_h[b]
            j, n = -1, -1
            for t in range(T):
                v = row[t]
                if srow[t] or t == 0:
                    j += 1
                    n = 0
                if v < OFFSET:
                    n = -1
                    patch_token[b, j] = ending[b, j] = self._special_token(v)
                    continue
                n = children[n].get(v - OFFSET, -1) if n >= 0 else -1
                node[b, t] = n
                # The patch so far spells a token: record it (the patch's last byte wins).
                patch_token[b, j] = token_at[n] if n >= 0 else -1
                ending[b, j] = patch_token[b, j] if patch_token[b, j] >= 0 else self._longest_ending(row, t)
        device = ids.device
        return WindowTokens(torch.from_numpy(patch_token).to(device), torch.from_numpy(ending).to(device),
                            torch.from_numpy(node).to(device))

    def subword_token(self, history: list[int], node: int) -> int:
        """What `describe` gives as the subword token of a patch ending at the last of
        `history` (bltx ids) whose bytes reach trie node `node`: the token it spells, else
        the longest vocabulary token ending there, or a special id's token; -1: none."""
        if history[-1] < OFFSET:
            return self._special_token(history[-1])
        if node >= 0 and self.token_at_list[node] >= 0:
            return self.token_at_list[node]
        return self._longest_ending(history, len(history) - 1)

    def _longest_ending(self, row: list[int], t: int) -> int:
        node, best, j = self.tokenizer._trie, -1, t
        while j >= 0 and j > t - self.max_token_bytes and row[j] >= OFFSET:
            node = node.get(row[j] - OFFSET)
            if node is None:
                break
            best = node.get(-1, best)
            j -= 1
        return best

    def _special_token(self, v: int) -> int:
        if v == BOS_ID:
            return self.bos_token if self.bos_token is not None else -1
        if v == EOS_ID:
            return self.eos_token if self.eos_token is not None else -1
        return -1

    # -- the prefix trie ------------------------------------------------------------------------

    def _build_trie(self, token_bytes: list[bytes | None]) -> None:
        ids = sorted((i for i, b in enumerate(token_bytes) if b), key=lambda i: token_bytes[i])
        # Host tensors (explicitly on the CPU: a model built under `torch.device("meta")`
        # still gets real tables); the model moves them to its device when it reads them.
        cpu = torch.device("cpu")
        self.sorted_tokens = torch.tensor(ids, dtype=torch.long, device=cpu)  # position in order -> token id
        children: list[dict[int, int]] = [{}]
        lo, hi, token_at = [0], [len(ids)], [-1]
        for pos, i in enumerate(ids):
            n = 0
            for byte in token_bytes[i]:
                nxt = children[n].get(byte)
                if nxt is None:
                    nxt = len(children)
                    children[n][byte] = nxt
                    children.append({})
                    lo.append(pos)
                    hi.append(pos)
                    token_at.append(-1)
                n = nxt
                hi[n] = pos + 1
            token_at[n] = i
        self._children = children
        self.token_at_list = token_at
        fanout = [len(c) for c in children]
        edge_lo = np.cumsum([0, *fanout[:-1]])
        edges = [(byte, child) for c in children for byte, child in sorted(c.items())]
        self.trie = {
            "lo": torch.tensor(lo, device=cpu), "hi": torch.tensor(hi, device=cpu),
            "token_at": torch.tensor(token_at, device=cpu), "fanout": torch.tensor(fanout, device=cpu),
            "edge_lo": torch.from_numpy(edge_lo.astype(np.int64)),
            "edge_byte": torch.tensor([e[0] for e in edges], dtype=torch.long, device=cpu),
            "edge_node": torch.tensor([e[1] for e in edges], dtype=torch.long, device=cpu),
        }
        self._on: dict = {}

    def tables(self, device: torch.device) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """(trie, sorted_tokens) on `device`, moved once per device."""
        if device not in self._on:
            self._on[device] = ({k: v.to(device) for k, v in self.trie.items()}, self.sorted_tokens.to(device))
        return self._on[device]

    def child_mask(self, node: torch.Tensor) -> torch.Tensor:
        """node long [...] (trie nodes, -1: none) -> bool [..., 260]: the bltx ids of the
        bytes that extend each node to another vocabulary prefix (none for -1). Gathered
        from the CSR edges: work grows with the children, not with nodes x 256."""
        trie, _ = self.tables(node.device)
        flat = node.reshape(-1)
        owner, edge = trie_edges(trie, flat)
        mask = torch.zeros(len(flat), VOCAB_SIZE, dtype=torch.bool, device=node.device)
        mask[owner, trie["edge_byte"][edge] + OFFSET] = True
        return mask.reshape(*node.shape, VOCAB_SIZE)

    def first_byte_ids(self) -> torch.Tensor:
        """long [V]: the bltx id each token's probability counts for when it is the next
        token's first byte: its first byte (+ OFFSET), EOS_ID for the EOS token, -1 for the
        others (specials that spell no bytes)."""
        out = torch.full((self.vocab_size,), -1, dtype=torch.long, device="cpu")
        for i, data in enumerate(self.tokenizer.token_bytes):
            if data:
                out[i] = data[0] + OFFSET
        if self.eos_token is not None:
            out[self.eos_token] = EOS_ID
        return out


def trie_edges(trie: dict[str, torch.Tensor], nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every child edge of each of `nodes` (long [N], -1: none, no edges), flattened:
    (owner [E], the index into `nodes` each edge belongs to; edge [E], its index into
    `edge_byte` / `edge_node`)."""
    at = nodes.clamp_min(0)
    fanout = torch.where(nodes >= 0, trie["fanout"][at], 0)
    owner = torch.repeat_interleave(torch.arange(len(nodes), device=nodes.device), fanout)
    first_edge = (fanout.cumsum(0) - fanout)[owner]
    edge = trie["edge_lo"][at][owner] + torch.arange(len(owner), device=nodes.device) - first_edge
    return owner, edge


def _first_present(vocab: dict[str, int], names: tuple[str, ...]) -> int | None:
    for name in names:
        if name in vocab:
            return vocab[name]
    return None
