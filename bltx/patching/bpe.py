"""The `bpe` patcher: patch boundaries that follow a BPE vocabulary, decided causally.

A BPE segmentation looks ahead (whether "the" is a token depends on whether "n" follows),
which the Patcher contract forbids: starts[t] may depend on ids[:t] only. The causal
approximation here is greedy longest match without lookahead:

    let cur = the bytes since the last patch start, up to and including byte t-1;
    byte t opens a patch  iff  cur is not a proper prefix of any vocabulary token

i.e. a patch closes as soon as it is a token that no longer token extends ("First" when
the vocabulary has no "Firstx"), or as soon as it stopped being a token prefix at all: then
the last byte overshot a real token boundary it could not see coming, and stays in the
patch it overshot ("the " | "cat" where BPE says "the" | " cat"). Special ids (BOS, EOS,
PAD) are never token prefixes, so a patch always ends after them.

The vocabulary is walked as a trie whose transition table is a tensor; the loop runs over
positions with the whole batch advancing together (a DFA is inherently sequential; T small
tensor ops per call, done once per batch outside the compiled model forward).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bltx.bytes import OFFSET, VOCAB_SIZE
from bltx.patching.bpe_vocab import DEFAULT_CACHE, BpeVocab, load_or_train, load_tokenizer
from bltx.patching.base import Patcher
from bltx.registry import register


def build_trie(token_bytes: list[bytes]) -> tuple[torch.Tensor, torch.Tensor]:
    """(transitions [n_nodes, 260] int32, -1 = no edge; has_children [n_nodes] bool).
    Node 0 is the root (empty prefix); edges are labelled with bltx ids (byte + OFFSET)."""
    children: list[dict[int, int]] = [{}]
    for tb in token_bytes:
        node = 0
        for byte in tb:
            nxt = children[node].get(byte + OFFSET)
            if nxt is None:
                nxt = len(children)
                children[node][byte + OFFSET] = nxt
                children.append({})
            node = nxt
    trans = torch.full((len(children), VOCAB_SIZE), -1, dtype=torch.int32)
    for node, edges in enumerate(children):
        for label, child in edges.items():
            trans[node, label] = child
    has_children = torch.tensor([bool(edges) for edges in children])
    return trans, has_children


def causal_bpe_starts(ids: torch.Tensor, trans: torch.Tensor, has_children: torch.Tensor, with_states: bool = False):
    """bool [B, T]: the rule of the module doc (starts[:, 0] left False; forced later).
    with_states: also the trie node [B, T] the open patch is at before each position."""
    B, T = ids.shape
    starts = torch.zeros(B, T, dtype=torch.bool, device=ids.device)
    nodes = torch.zeros(B, T, dtype=torch.long, device=ids.device)
    state = torch.zeros(B, dtype=torch.long, device=ids.device)
    for t in range(1, T):
        nxt = trans[state, ids[:, t - 1]].long()
        opens = (nxt < 0) | ~has_children[nxt.clamp(min=0)]
        starts[:, t] = opens
        state = torch.where(opens, torch.zeros_like(nxt), nxt)
        nodes[:, t] = state
    return (starts, nodes) if with_states else starts


@register("patcher", "bpe")
class BpePatcher(Patcher):
    """Patches that end where a causal greedy BPE match ends (see the module doc).

    The tokenizer is trained on `paths` (recipe-style: files, globs, bltx:NAME) with
    `vocab_size` tokens, exactly as the BPE-token baseline trains its own (same cache), or
    loaded from a `tokenizer` JSON file.
    """

    @dataclass
    class Config:
        paths: list[str] = field(default_factory=lambda: ["bltx:tiny_shakespeare"])
        vocab_size: int = 512
        fraction: float = 0.95
        tokenizer: str = ""
        cache_dir: str = DEFAULT_CACHE
        max_patch_length: int | None = None

    def __init__(self, cfg: Config, **context):
        super().__init__(max_patch_length=cfg.max_patch_length)
        self.cfg = cfg
        vocab = self._vocab(cfg)
        trans, has_children = build_trie(vocab.token_bytes)
        self.register_buffer("trans", trans, persistent=False)
        self.register_buffer("has_children", has_children, persistent=False)

    @staticmethod
    def _vocab(cfg: Config) -> BpeVocab:
        if cfg.tokenizer:
            return load_tokenizer(cfg.tokenizer)
        return load_or_train(cfg.paths, cfg.vocab_size, cfg.fraction, cfg.cache_dir)

    def compute_starts(self, ids, entropies=None):
        return causal_bpe_starts(ids, self.trans, self.has_children)

    # Online: the trie node of the open patch is the whole state (one lookup per byte).
    online_steps = True

    def _online_init(self, state, batch, capacity, device):
        state.extra["node"] = torch.zeros(batch, dtype=torch.long, device=device)

    def _online_prefill(self, ids, lengths, state):
        ext = torch.nn.functional.pad(ids, (0, 1))
        starts, nodes = causal_bpe_starts(ext, self.trans, self.has_children, with_states=True)
        rows = torch.arange(ids.shape[0], device=ids.device)
        state.extra["node"].copy_(nodes[rows, lengths])
        return starts

    def _online_step(self, ids, state):
        node = state.extra["node"]
        nxt = self.trans[node, ids].long()
        opens = (nxt < 0) | ~self.has_children[nxt.clamp(min=0)]
        node.copy_(torch.where(opens, torch.zeros_like(nxt), nxt))
        return opens
