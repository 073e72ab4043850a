"""Step 0 of the byte-ifying example: train a small subword source model, the kind of
Hugging Face folder a user would bring, on the bundled Shakespeare corpus.

    python tools/make_source.py --out runs/source [--steps 1000] [--seed 0] [--vocab 4096]
        [--dim 256] [--layers 4] [--heads 4] [--ctx 128] [--batch 8] [--lr 2e-3] [--force]

Writes OUT as an ordinary `save_pretrained` folder (config.json, model.safetensors,
tokenizer.json and the tokenizer's config files) and OUT/source.json with the numbers the
later steps compare against: training FLOPs, held-out bits per byte, bytes per token.
An OUT that already has source.json is left alone unless --force is given.

Data: bltx/data/corpora/tiny_shakespeare.txt (399,862 bytes), cut by bytes exactly where
bltx cuts its validation split for `validation_fraction = 0.05`
(toml_configs/data/tiny_shakespeare.toml; bltx/data/stream.py split_stream): bltx rounds
5% of its id stream, which is the file's bytes plus BOS and EOS, so the held-out part is
bytes 379,870.. (19,992 bytes; `int(0.95 * len)` would be 379,868, two bytes off). The
tokenizer and the model see only the bytes before the cut.

Tokenizer: byte-level BPE (`tokenizers`; every byte is in the initial alphabet, so any
text encodes, and the tokens spell the exact bytes back), special token <|endoftext|>,
which is also the model's BOS and EOS. 4,096 tokens by default: 3.3 bytes per token on the
held-out text (1,024: 2.4; 8,192: 3.6; real sources' 100k+ vocabularies give 4-4.5 on
English), where the source is still as good as the 1,024-token one (8,192 tokens overfit
the 380 KB corpus). The vocabulary sets how often a byteified model's one-byte-lookahead
boundaries disagree with the tokenizer: README "Byteifying a subword LM".

Model: `LlamaForCausalLM`, fp32, AdamW with a cosine schedule, on random windows of the
tokenized train split. Every window, in training and in scoring, starts from
<|endoftext|>: the model sees the context it will be scored with, and the scorer can
charge every real token, the first of a window included.

Held-out bpb: the held-out text is tokenized once and cut into consecutive windows of
CTX tokens; each window is scored as [<|endoftext|>, t0 .. t(n-2)] -> [t0 .. t(n-1)];
bpb = summed NLL (nats) / ln 2 / held-out bytes. train_flops: one training step (forward,
loss, backward) counted by torch's FlopCounterMode at the training shape, times the steps.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bltx.bundled import FOLDER  # noqa: E402

CORPUS = FOLDER / "tiny_shakespeare.txt"
HELD_OUT_FRACTION = 0.05  # toml_configs/data/tiny_shakespeare.toml's validation_fraction
EOT = "<|endoftext|>"
WARMUP_FRACTION = 0.05  # of the steps; short, the model is small and the lr modest
LOG_EVERY = 50
LAST_STEPS = 20  # train_bpb_last: mean of this many final steps' losses
DEFAULT_VOCAB = 4096  # the tokenizer's size (module doc, "Tokenizer")


def held_out_cut(n_bytes: int, fraction: float = HELD_OUT_FRACTION, add_bos: bool = True) -> int:
    """The byte index where bltx's validation split of a one-file corpus starts.

    bltx's stream is [BOS] bytes EOS and split_stream keeps the last round(len * f)
    positions; mapped back to bytes (the EOS is no byte) that is this index."""
    positions = n_bytes + int(add_bos) + 1
    n_val = int(round(positions * fraction))
    return positions - n_val - int(add_bos)


def split_corpus(path: Path = CORPUS) -> tuple[str, str]:
    """(train text, held-out text), cut at `held_out_cut`."""
    data = path.read_bytes()
    cut = held_out_cut(len(data))
    # The corpus is ASCII, so the cut cannot split a character; decoding strictly says so.
    return data[:cut].decode("utf-8"), data[cut:].decode("utf-8")


def train_tokenizer(text: str, vocab: int):
    """A byte-level BPE on `text`, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # No prefix space: encoding adds nothing, so decode(encode(s)) == s for every s.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([text], trainer)
    # clean_up_tokenization_spaces would drop spaces before punctuation on decode.
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOT, bos_token=EOT,
                                   clean_up_tokenization_spaces=False)


def encode(tokenizer, text: str):
    import torch

    return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)


def build_model(args, vocab_size: int, eot_id: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab_size, hidden_size=args.dim, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.heads,
        # SwiGLU's usual 8/3 width, rounded up to a multiple of 32 for the matmuls
        intermediate_size=32 * math.ceil(8 * args.dim / 3 / 32),
        max_position_embeddings=args.ctx, rope_theta=10000.0, rms_norm_eps=1e-5,
        tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
        bos_token_id=eot_id, eos_token_id=eot_id,
        # Eager attention is plain matmuls, which FlopCounterMode counts; it has no rule for
        # the CPU SDPA kernel and would leave attention out. As fast as SDPA at this size.
        attn_implementation="eager",
    )
    return LlamaForCausalLM(cfg)


def windows(ids, starts, ctx: int, eot_id: int):
    """Inputs [EOT, w0 .. w(ctx-2)] and targets [w0 .. w(ctx-1)] for the ctx-token
    windows of `ids` at `starts`."""
    import torch

    w = torch.stack([ids[s : s + ctx] for s in starts.tolist()])
    x = torch.cat([torch.full((len(w), 1), eot_id, dtype=torch.long), w[:, :-1]], dim=1)
    return x, w


def loss_of(model, x, y):
    """Mean token NLL in nats."""
    import torch.nn.functional as F

    logits = model(input_ids=x).logits
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))


def step_flops(model, batch: int, ctx: int, eot_id: int) -> int:
    """FLOPs of one training step (forward, loss, backward) at the training shape. Token
    values do not change the count; the gradients are cleared after."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.full((batch, ctx), eot_id, dtype=torch.long)
    counter = FlopCounterMode(display=False)
    with counter:
        loss_of(model, x, x).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def lr_at(step: int, steps: int, peak: float) -> float:
    """Linear warmup, then cosine down to 10% of the peak."""
    warmup = max(1, int(steps * WARMUP_FRACTION))
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def train(model, ids, args, eot_id: int) -> list[float]:
    """Train in place; the per-step losses (nats/token)."""
    import torch

    # Weight decay on matrices only: norms' gains are not pulled toward 0.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(args.seed)
    model.train()
    losses, t0 = [], time.perf_counter()
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr)
        starts = torch.randint(0, len(ids) - args.ctx + 1, (args.batch,), generator=gen)
        x, y = windows(ids, starts, args.ctx, eot_id)
        loss = loss_of(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % LOG_EVERY == 0 or step + 1 == args.steps:
            rate = (step + 1) * args.batch * args.ctx / (time.perf_counter() - t0)
            print(f"step {step + 1:>5}/{args.steps}  loss {loss.item():.4f}  {rate:,.0f} tokens/s", flush=True)
    model.eval()
    return losses


def held_out_nats(model, ids, ctx: int, eot_id: int) -> float:
    """Summed NLL (nats) of every token of `ids`, scored in consecutive ctx-token windows,
    each started from EOT (see the module docstring)."""
    import torch
    import torch.nn.functional as F

    total = 0.0
    with torch.no_grad():
        for start in range(0, len(ids), ctx):
            w = ids[start : start + ctx].unsqueeze(0)
            x = torch.cat([torch.tensor([[eot_id]]), w[:, :-1]], dim=1)
            logits = model(input_ids=x).logits.float()
            total += F.cross_entropy(logits[0], w[0], reduction="sum").item()
    return total


def make(args) -> dict:
    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    train_text, held_text = split_corpus()
    tokenizer = train_tokenizer(train_text, args.vocab)
    eot_id = tokenizer.convert_tokens_to_ids(EOT)
    train_ids, held_ids = encode(tokenizer, train_text), encode(tokenizer, held_text)
    train_bytes, held_bytes = len(train_text.encode()), len(held_text.encode())
    print(f"tokenizer: {len(tokenizer)} tokens; train {train_bytes:,} bytes -> {len(train_ids):,} tokens, "
          f"held-out {held_bytes:,} bytes -> {len(held_ids):,} tokens", flush=True)

    model = build_model(args, len(tokenizer), eot_id)
    params = sum(p.numel() for p in model.parameters())
    flops = step_flops(model, args.batch, args.ctx, eot_id)
    print(f"model: {params:,} parameters; {flops / 1e9:.2f} GFLOP per training step", flush=True)
    losses = train(model, train_ids, args, eot_id)
    nats = held_out_nats(model, held_ids, args.ctx, eot_id)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    bytes_per_token = train_bytes / len(train_ids)
    last = losses[-LAST_STEPS:]
    result = {
        "train_flops": flops * args.steps,
        "flops_per_token": flops / (args.batch * args.ctx),
        "steps": args.steps,
        "train_tokens": args.steps * args.batch * args.ctx,
        "held_out_bpb": nats / math.log(2) / held_bytes,
        "train_bpb_last": sum(last) / len(last) / math.log(2) / bytes_per_token,
        "bytes_per_token": bytes_per_token,
        "params": params,
        "vocab_size": len(tokenizer),
        "config": {k: getattr(args, k) for k in ("steps", "seed", "vocab", "dim", "layers", "heads", "ctx", "batch", "lr")},
        "held_out_bytes": held_bytes,
        "held_out_start_byte": len(train_text.encode()),
        "seconds": time.perf_counter() - t0,
    }
    # Written last: its presence says the folder is complete (the skip check in main).
    (out / "source.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the source model's folder")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab", type=int, default=DEFAULT_VOCAB, help="BPE vocabulary size, EOT and the 256 bytes included")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ctx", type=int, default=128, help="tokens per window")
    parser.add_argument("--batch", type=int, default=8, help="windows per step")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    parser.add_argument("--force", action="store_true", help="retrain even if OUT/source.json exists")
    args = parser.parse_args(argv)
    if (Path(args.out) / "source.json").is_file() and not args.force:
        print(f"{args.out}/source.json exists; leaving it (--force to retrain)")
        return 0
    r = make(args)
    print(f"\n{'params':<18}{r['params']:>16,}\n{'vocab':<18}{r['vocab_size']:>16,}"
          f"\n{'bytes/token':<18}{r['bytes_per_token']:>16.3f}\n{'train tokens':<18}{r['train_tokens']:>16,}"
          f"\n{'train FLOPs':<18}{r['train_flops']:>16.3e}\n{'FLOPs/token':<18}{r['flops_per_token']:>16.3e}"
          f"\n{'train bpb (last)':<18}{r['train_bpb_last']:>16.4f}\n{'held-out bpb':<18}{r['held_out_bpb']:>16.4f}"
          f"\n{'seconds':<18}{r['seconds']:>16.1f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
