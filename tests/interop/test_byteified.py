"""A byteified subword LM (bltx/interop/byteify/, issue 23), checked against the source it
came from (a random HF Llama / Qwen2 saved with save_pretrained, with its own BPE
tokenizer): the plumbing is exact before anything is learned, the distillation targets are
the source's token probabilities byte by byte, generation decides boundaries online and
matches recomputation, and bad sources are one line."""

import math

import pytest
import torch

import bltx
from bltx.bytes import BOS_ID, EOS_ID, OFFSET

from helpers import SOURCE_TEXT, assert_one_clean_line, read_metrics, run_cli, save_source_folder, write_recipe

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

TEXT = SOURCE_TEXT.encode()


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def source(request, tmp_path_factory):
    return save_source_folder(tmp_path_factory.mktemp(request.param), request.param)


@pytest.fixture(scope="module")
def llama_source(tmp_path_factory):
    return save_source_folder(tmp_path_factory.mktemp("llama"), "llama")


def table(folder, **extra):
    return {"type": "byteified", "source": str(folder),
            "byte_embedder": {"type": "hash_ngram", "ngram_sizes": [3, 4], "hash_vocab": 512},
            "encoder": {"type": "local", "dim": 32, "n_layers": 1, "n_heads": 2},
            "latent": {"type": "hf_llama", "path": str(folder), "final_norm": True},
            "decoder": {"type": "local", "dim": 32, "n_layers": 1, "n_heads": 2}, **extra}


def window(start=0, length=96):
    return torch.tensor([[BOS_ID] + [b + OFFSET for b in TEXT[start: start + length]]])


def test_oracle_latent_over_source_embeddings_is_the_source(source):
    """The local encoder replaced by the source's own embedding lookup at tokenizer
    boundaries: the latent's outputs are the source's final hidden states (fp32)."""
    folder, hf = source
    model = bltx.build("model", table(folder)).eval()
    ids = torch.cat([window(0), window(40)])
    with torch.no_grad():
        ours = model.source_states(ids)
        starts = model.patch(ids)
        for row in range(2):
            tokens = model.vocab.describe(ids[row:row + 1], starts[row:row + 1], ours.shape[1]).patch_token[0]
            n = int(starts[row].sum())
            assert bool((tokens[:n] >= 0).all())
            # The tokens spell the window: BOS's token, then the tokenizer's own encoding.
            data = bytes(v - OFFSET for v in ids[row, 1:].tolist())
            assert tokens[1:n].tolist() == model.vocab.tokens(data)
            ref = hf.model(tokens[None, :n]).last_hidden_state
            assert torch.allclose(ours[row, :n], ref[0], atol=1e-5), (ours[row, :n] - ref[0]).abs().max()


def test_distillation_targets_are_the_source_token_probabilities(llama_source):
    """Multiplying the teacher's byte-level factors (boundary, next byte inside a token,
    first byte after one) over a token's bytes gives the source's probability of that
    token (teacher.py): summed over a window, the source's token NLL to 1e-4."""
    folder, hf = llama_source
    model = bltx.build("model", table(folder)).train()
    ids = window(7, 120)
    x, y = ids[:, :-1], ids[:, 1:]
    with torch.no_grad():
        bounds = model.boundaries(x, y)
        starts = torch.nn.functional.pad(bounds.ends[:, :-1], (1, 0), value=True)
        patch_ids = starts.long().cumsum(-1) - 1
        P = int(patch_ids[:, -1].max()) + 1
        tokens = model.vocab.describe(x, starts, P)
        t = model.teacher_targets(tokens, patch_ids)
        ends = bounds.ends[0]
        total = 0.0
        K = P - 1  # the last token may be cut by the window's end: score tokens 1 .. K-1
        for pos in range(x.shape[1]):
            j = int(patch_ids[0, pos])
            if 1 <= j < K:
                assert bool(t.inside[0, pos])
                p = float(t.p_end[0, pos])
                total += math.log(p if ends[pos] else 1 - p)
                if not ends[pos]:
                    total += math.log(float(t.cont[0, pos, y[0, pos]]))
            if 0 <= j < K - 1 and ends[pos]:
                total += math.log(float(t.first[0, j, y[0, pos]]))
        logp = torch.log_softmax(hf(tokens.patch_token[:, :K]).logits.float(), -1)[0]
        ref = sum(float(logp[k - 1, tokens.patch_token[0, k]]) for k in range(1, K))
    assert abs(total - ref) < 1e-4 * max(1.0, abs(ref)), (total, ref)


def test_first_byte_prior_is_the_sources_next_token_marginal(llama_source):
    folder, hf = llama_source
    model = bltx.build("model", table(folder)).eval()
    z = torch.randn(3, 64)
    logp = model.source_head.first_byte_probs(model.source_head.token_probs(z)).log()
    probs = torch.softmax(hf.lm_head(z), -1)
    token_bytes = model.vocab.tokenizer.token_bytes
    eos = model.vocab.eos_token
    for c in (OFFSET + ord("e"), OFFSET + ord(" ")):
        mass = sum(probs[:, i] for i, b in enumerate(token_bytes) if b and b[0] + OFFSET == c)
        norm = sum(probs[:, i] for i, b in enumerate(token_bytes) if b or i == eos)
        assert torch.allclose(logp[:, c].exp(), mass / norm, atol=1e-6)


def _sharpen_boundaries(model):
    """A random boundary head would say 'ends' half the time; a sharper one makes both
    outcomes common in a short generation (the rows then close patches at different bytes)."""
    with torch.no_grad():
        model.heads.boundary.weight.normal_(0, 1.0)
        model.heads.boundary.bias.zero_()


def test_with_the_spelling_prior_the_untrained_model_is_its_teacher(llama_source):
    """The spelling prior reads the source head through the same trie factors as the
    teacher: with the decoder on the source's states and the learned heads at their zero
    start, every KL part is ~0 (the prior's floor: 1e-3 mixed in) before any step."""
    folder, _ = llama_source
    model = bltx.build("model", table(folder, decoder_reads="source", spelling_prior=True)).train()
    ids = window(5, 120)
    out = model(ids[:, :-1], ids[:, 1:])
    for part in ("kl_boundary", "kl_inside", "kl_after"):
        assert -1e-6 < float(out.stats[part]) < 5e-3, (part, out.stats)  # 0 up to rounding
    without = bltx.build("model", table(folder, decoder_reads="source")).train()(ids[:, :-1], ids[:, 1:])
    assert float(without.stats["kl_inside"]) > 1.0  # a random decoder is far from it


@pytest.mark.parametrize("boundaries,spelling", [("tokenizer", False), ("predictor", False), ("predictor", True)])
def test_cached_generation_equals_recomputation(llama_source, boundaries, spelling):
    """Greedy, two prompts of different lengths batched: the session's bytes, fed back to the
    forward with the boundaries the session emitted, are its argmax at every step (with
    predictor boundaries those are also the ones the bytes alone give), and its logits match
    to 1e-5 (1e-4 with the spelling prior: its float32 cumulative sums over
    the vocabulary run over other shapes in a step and in the forward)."""
    from bltx.infer.generate import _padded, generate, to_prompt_ids
    from bltx.infer.sampling import SamplingConfig, sample_next

    folder, _ = llama_source
    torch.manual_seed(1)
    model = bltx.build("model", table(folder, boundaries=boundaries, spelling_prior=spelling)).eval()
    _sharpen_boundaries(model)
    prompts = [to_prompt_ids(p) for p in ("First Cit", "Speak, speak. We are")]
    ids, lengths = _padded(prompts, torch.device("cpu"))
    session = model.new_session(2, ids.shape[1] + 24)
    logits, steps, out = session.prefill(ids, lengths), [], [[], []]
    for _ in range(24):
        steps.append(logits)
        nxt = sample_next(logits, SamplingConfig())  # greedy, special ids masked as generate does
        for row in range(2):
            out[row].append(int(nxt[row]))
        session.feed(nxt)
        logits = session.decode()
    for row in range(2):
        full = torch.cat([prompts[row], torch.tensor(out[row])])[None]
        starts = session.realised_starts(row)[None]
        assert 3 < len(session.ends[row]) < len(full[0]) - 3, "both boundary outcomes occur"
        with torch.no_grad():
            ref = model(full, starts=starts).logits[0]
            if boundaries == "predictor":
                # The bytes alone give back the session's boundaries: each was drawn from the
                # set consistent with the boundary emitted before it.
                again = model.boundaries(full[:, :-1], full[:, 1:]).ends[0]
                assert torch.equal(again, starts[0, 1: full.shape[1]]), row
        L = len(prompts[row])
        for i in range(24):
            assert torch.allclose(steps[i][row], ref[L - 1 + i], atol=1e-4 if spelling else 1e-5), (row, i)
    # The generator drives the same session: the same greedy bytes (up to an EOS, where it
    # stops). With predicted boundaries, generating by full recomputation (the forward on
    # each prefix, no boundaries passed in, prompts of different lengths batched) gives
    # them too; the tokenizer's boundaries read ahead, so recomputing re-tokenizes the
    # text generated so far and only a session decides them online.
    cached = generate(model, ["First Cit", "Speak, speak. We are"], 24)
    for got, want in zip(cached, out):
        assert got.tolist() == want[: len(got)] and (len(got) == 24 or got[-1] == EOS_ID)
    if boundaries == "predictor":
        recomputed = generate(model, ["First Cit", "Speak, speak. We are"], 24, use_cache=False)
        assert [r.tolist() for r in recomputed] == [c.tolist() for c in cached]
        # Sampled, one seed: both paths draw the same numbers from the generator.
        hot = SamplingConfig(temperature=1.0)
        sampled = [generate(model, ["First Cit", "Speak, speak. We are"], 24, sampling=hot, seed=5, use_cache=flag)
                   for flag in (True, False)]
        assert [r.tolist() for r in sampled[0]] == [r.tolist() for r in sampled[1]]


def test_causal_with_the_boundary_head_in_the_loop(llama_source):
    """Two byte streams sharing a prefix, fed through the session (boundaries decided
    online by the model): the logits at every shared position agree, whatever follows."""
    folder, _ = llama_source
    torch.manual_seed(2)
    model = bltx.build("model", table(folder)).eval()
    _sharpen_boundaries(model)
    a, b = window(0, 60)[0], window(0, 60)[0].clone()
    b[35:] = torch.tensor([OFFSET + ord(c) for c in "zq! xx" * 5])[: len(b) - 35]

    def logits_of(ids):
        s = model.new_session(1, len(ids) + 1)
        out = [s.prefill(ids[None, :4], torch.tensor([4]))]
        for v in ids[4:]:
            s.feed(v[None])
            out.append(s.decode())
        return torch.cat(out)

    la, lb = logits_of(a), logits_of(b)
    assert torch.equal(la[:32], lb[:32])
    assert not torch.allclose(la[33:], lb[33:])


def test_training_stage1_through_the_cli(llama_source, tmp_path):
    """Stage 1 as the recipe runs it (the decoder on the source's states, the encoder
    regressed onto its embeddings): the frozen latent stays the source's, the loss and the
    embedding error fall, the predictor learns the tokenizer's boundaries. The FLOP counter
    counts the parts as they run: through the frozen latent (forward + the backward through
    it, and the teacher forward only) or beside it (its one forward pass, no gradients)."""
    folder, hf = llama_source
    data = tmp_path / "text.txt"
    data.write_bytes(TEXT * 3)
    recipe = write_recipe(tmp_path, table(folder, decoder_reads="source"),
                          data={"paths": [str(data)], "seq_len": 128, "validation_fraction": 0.1},
                          training={"steps": 30, "freeze": ["latent.*"]},
                          checkpoint={"interval": 30, "keep_latest": 1}, metrics={"log_interval": 10})
    proc = run_cli(str(recipe))
    assert proc.returncode == 0, proc.stderr[-3000:]
    train = read_metrics(tmp_path / "run")
    assert train[-1]["bpb"] < train[0]["bpb"]
    assert train[-1]["predictor_agreement"] > train[0]["predictor_agreement"] + 0.1
    assert train[-1]["embedding_rel_err"] < train[0]["embedding_rel_err"]
    trained = bltx.load(tmp_path / "run")  # built on the meta device, then loaded
    ref = bltx.build("model", table(folder))
    for name, p in trained.latent.state_dict().items():
        assert torch.equal(p, ref.latent.state_dict()[name]), name
    # Everything the forward reads beyond the weights (the vocabulary's tables) survives
    # the meta-device build: the loaded model scores as one built in place.
    ref.load_state_dict(trained.state_dict())
    ids = window(3, 100)
    with torch.no_grad():
        assert torch.allclose(trained.eval()(ids[:, :-1], ids[:, 1:]).nll, ref.eval()(ids[:, :-1], ids[:, 1:]).nll)
    from bltx.eval.flops import flops_per_byte, training_factors

    frozen = bltx.build("model", table(folder)).train()
    frozen.latent.requires_grad_(False)
    factors = training_factors(frozen, frozen.flop_terms(128, 3.5))
    assert factors["latent"] == 2.0 and factors["teacher"] == 1.0 and factors["encoder"] == 3.0
    assert factors["source_head"] == 2.0  # frozen, with trained parts before it
    beside = bltx.build("model", table(folder, decoder_reads="source")).train()
    beside.latent.requires_grad_(False)
    terms = beside.flop_terms(128, 3.5)
    factors = training_factors(beside, terms)
    assert "teacher" not in terms and factors["latent"] == 1.0 and factors["source_head"] == 1.0
    assert flops_per_byte(beside, 3.5, 128, training=True)["total"] < flops_per_byte(frozen, 3.5, 128, training=True)["total"]
    # Evaluation counts the model's own path: no teacher, no predictor on tokenizer patches.
    assert set(beside.eval().flop_terms(128, 3.5)) == {"byte_embedder", "source_embedding", "encoder", "latent",
                                                       "decoder", "heads", "source_head"}


@pytest.mark.parametrize("case", ["architecture", "tokenizer", "shape"])
def test_bad_sources_are_one_line(llama_source, tmp_path, case):
    import json
    import shutil

    folder, _ = llama_source
    src = tmp_path / "src"
    shutil.copytree(folder, src)
    model = table(src)
    if case == "architecture":
        cfg = json.loads((src / "config.json").read_text())
        cfg["model_type"] = "gpt2"
        (src / "config.json").write_text(json.dumps(cfg))
        expect = "model_type 'gpt2' is not a supported source"
    elif case == "tokenizer":
        (src / "tokenizer.json").unlink()
        expect = "no tokenizer.json in"
    else:
        model["latent"] = {"type": "transformer", "dim": 48, "n_layers": 2, "n_heads": 4, "final_norm": True}
        expect = "model.latent.dim = 48 disagrees with the source's hidden_size 64"
    data = tmp_path / "text.txt"
    data.write_bytes(TEXT)
    recipe = write_recipe(tmp_path, model, data={"paths": [str(data)]}, training={"steps": 1})
    assert_one_clean_line(run_cli(str(recipe)), expect)


def test_predicted_patches_stay_vocabulary_prefixes(llama_source):
    """Predictor boundaries (here from an untrained predictor at a high threshold: long
    patches) are closed wherever no token extends the patch by the next byte, so every
    byte's patch prefix has a trie node: what the subword embedding and the spelling prior
    read."""
    folder, _ = llama_source
    model = bltx.build("model", table(folder, boundaries="predictor", predictor_threshold=0.99)).eval()
    ids = torch.cat([window(0, 100), window(150, 100)])
    with torch.no_grad():
        bounds = model.boundaries(ids[:, :-1], ids[:, 1:])
    starts = torch.nn.functional.pad(bounds.ends[:, :-1], (1, 0), value=True)
    nodes = model.vocab.describe(ids[:, :-1], starts, int(starts.sum(-1).max())).node
    assert bool((nodes[:, 1:] >= 0).all())  # every byte after BOS
    assert float(starts.float().mean()) < 0.9  # patches of several bytes, not one each


def _predicting_model(llama_source, spelling: bool):
    """A random byteified model with predictor boundaries whose boundaries after a byte
    often depend on the next byte (both outcomes of the predictor occur)."""
    torch.manual_seed(3)
    model = bltx.build("model", table(llama_source[0], boundaries="predictor", spelling_prior=spelling)).eval()
    _sharpen_boundaries(model)
    with torch.no_grad():
        model.predictor.out.weight.normal_(0, 3.0)
    return model


@pytest.mark.parametrize("spelling", [False, True])
def test_predicted_boundaries_give_a_proper_byte_distribution(llama_source, spelling):
    """With predictor boundaries the forward's NLL is the bytes' own, not a bound: every
    possible next byte appended to one context in turn (260 rows), the NLL each adds is
    -log P(byte | context), and those probabilities sum to 1. A model that scored the
    boundary and the byte apart (both heads over all 260 bytes) leaves mass on next bytes
    its boundary excludes, and sums to less."""
    from bltx.bytes import VOCAB_SIZE

    model = _predicting_model(llama_source, spelling=spelling)
    ctx = window(0, 40)
    n = ctx.shape[1]
    rows = torch.cat([ctx.expand(VOCAB_SIZE, n), torch.arange(VOCAB_SIZE)[:, None]], dim=1)
    with torch.no_grad():
        full = [float(model(rows[i: i + 1, :-1], rows[i: i + 1, 1:]).nll) for i in range(VOCAB_SIZE)]
        prefix = float(model(ctx[:, :-1], ctx[:, 1:]).nll)
    probs = torch.tensor([math.exp(prefix - f) for f in full], dtype=torch.float64)
    assert abs(float(probs.sum()) - 1.0) < 1e-4, float(probs.sum())
    bounds = model.boundaries(rows[:, :-1], rows[:, 1:])
    assert 0 < int(bounds.ends[:, -1].sum()) < VOCAB_SIZE  # the last byte's boundary depends on the next


def test_lm_eval_scores_are_the_bytes_own_probabilities(llama_source):
    """The lm-eval adapter scores a byteified model (predicted boundaries) through its `nll`:
    each of the 260 next ids after one context gets -log P(id | context), boundary included,
    and those probabilities sum to 1. The logits alone are the byte given the boundary (at
    the last byte, the one the boundary head picks): the other outcome's bytes get nothing."""
    pytest.importorskip("lm_eval")
    from bltx.bytes import VOCAB_SIZE
    from bltx.eval.lm_eval_adapter import BltxLM

    model = _predicting_model(llama_source, spelling=True)
    ctx = window(0, 40)[0].tolist()
    lm = BltxLM(model, torch.device("cpu"), "float32", batch_size=64, max_length=128)
    scores = lm.score([(ctx + [v], 1) for v in range(VOCAB_SIZE)])
    assert abs(sum(math.exp(lp) for lp, _ in scores) - 1.0) < 1e-4
    with torch.no_grad():
        ids = torch.tensor([ctx + [v] for v in range(VOCAB_SIZE)])
        nll = float(model(ids[:1, :-1], ids[:1, 1:]).nll) - float(model(ids[:1, :-2], ids[:1, 1:-1]).nll)
        given_boundary = torch.log_softmax(model(ids[:, :-1]).logits[:, -1].float(), -1)
    assert scores[0][0] == pytest.approx(-nll, abs=1e-4)
    # Both outcomes of the last byte's boundary keep their probability (the logits give
    # one of them nothing), and each id's score is the one the logits give within its outcome.
    closes = model.boundaries(ids[:, :-1], ids[:, 1:]).ends[:, -1]
    exact = torch.tensor([lp for lp, _ in scores], dtype=torch.float64)
    p_close = float(exact.exp()[closes].sum())
    assert 1e-3 < p_close < 1 - 1e-3, p_close
    assert min(float(given_boundary.diagonal().exp()[closes].sum()), float(given_boundary.diagonal().exp()[~closes].sum())) < 1e-6
    # Greedy: what the cached generator gives after the context (boundary, then byte).
    from bltx.infer.generate import generate

    own = generate(model, [torch.tensor(ctx)], 6, compile=False)[0].tolist()
    other = own[:-1] + [OFFSET + (own[-1] - OFFSET + 1) % 256]
    assert [greedy for _, greedy in lm.score([(ctx + own, 6), (ctx + other, 6)])] == [True, False]
    # Under bf16 autocast (dtype "auto" on a bf16 CPU or GPU) the generator's caches keep the
    # model's dtype: the greedy check runs outside autocast, as generate_until does.
    bf16 = BltxLM(model, torch.device("cpu"), "bfloat16", batch_size=64, max_length=128)
    [(_, greedy)] = bf16.score([(ctx + own, 6)])
    assert greedy


def test_stage1a_trains_the_predictor_alone(llama_source):
    """model.predictor_only: a training forward is the predictor's loss on the tokenizer's
    boundaries and nothing else (only it gets gradients, the FLOP counter counts only it); a few optimizer steps raise its agreement with the
    tokenizer; evaluation runs the whole model."""
    from bltx.eval.flops import flops_per_byte

    folder, _ = llama_source
    torch.manual_seed(4)
    model = bltx.build("model", table(folder, predictor_only=True)).train()
    ids = torch.cat([window(0, 120), window(200, 120), window(400, 120)])
    bounds = model.boundaries(ids[:, :-1], ids[:, 1:])
    out = model(ids[:, :-1], ids[:, 1:])
    out.nll.backward()
    grads = {name.split(".")[0] for name, p in model.named_parameters() if p.grad is not None}
    assert grads == {"predictor"}
    assert set(model.flop_terms(128, 2.5)) == {"predictor"}
    assert flops_per_byte(model, 2.5, 128, training=True)["total"] < 0.05 * flops_per_byte(
        model.eval(), 2.5, 128, training=False)["total"]
    # The NLL is the predictor's: its BCE against the tokenizer's boundaries, in nats.
    logit = model.predictor(ids[:, :-1], ids[:, 1:])
    want = torch.nn.functional.binary_cross_entropy_with_logits(logit, bounds.ends.float(), reduction="sum")
    assert torch.allclose(out.nll, want, rtol=1e-5)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = float(out.stats["predictor_agreement"])
    for _ in range(40):
        opt.zero_grad()
        out = model(ids[:, :-1], ids[:, 1:])
        out.nll.backward()
        opt.step()
    assert float(out.stats["predictor_agreement"]) > first + 0.1
    with torch.no_grad():
        full = model.eval()(ids[:, :-1], ids[:, 1:])
    assert "boundary_bpb" in full.stats  # the whole model's NLL: bytes and boundaries
