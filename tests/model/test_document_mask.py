"""data.document_mask in the BLT forward: an example packed after another in a window gets
exactly the logits it gets alone, through every attention (byte windows blocked or dense,
patch cross-attention, latent) and the hash n-grams."""

import pytest
import torch

from bltx.bytes import PAD_ID, encode
from bltx.data.windows import stack_windows
from bltx.errors import ConfigError
from helpers import random_blt

STRIDE = 3


def starts_of(lengths: list[int], total: int) -> torch.Tensor:
    """Patch starts every STRIDE bytes from each example's start, [1, total + 1]; the last
    column says the byte after the window opens a patch (an example's end)."""
    starts = torch.zeros(1, total + 1, dtype=torch.bool)
    pos = 0
    for n in lengths:
        starts[0, pos : pos + n : STRIDE] = True
        pos += n
    starts[0, pos:] = True  # padding: one patch per byte, and the end of the window
    return starts


@pytest.mark.parametrize("encoder_window,decoder_window", [(4, None), (64, 6)])
def test_packed_example_gets_its_logits_alone(encoder_window, decoder_window):
    # window 4 over 40 bytes runs blocked; 64 >= T uses the dense mask; decoder 6 blocked.
    model = random_blt({"type": "static", "stride": STRIDE}, encoder_window=encoder_window,
                       decoder_window=decoder_window, ngram_sizes=(3, 5, 8))
    a = encode("first example, a bit longer", bos=True, eos=True)
    b = encode("second one?", bos=True, eos=True)
    pad = torch.full((3,), PAD_ID)
    window = torch.cat([a, b, pad, pad[:1]])  # T + 1 ids
    batch = stack_windows([(window.numpy(), None)], doc_ids=True)
    ids, doc = batch["ids"], batch["doc_ids"]
    T = ids.shape[1]
    assert doc[0, len(a) - 1] == 0 and doc[0, len(a)] == 1 and doc[0, -1] == 2  # EOS ends its example
    with torch.no_grad():
        packed = model(ids, starts=starts_of([len(a), len(b)], T)[:, :T], doc_ids=doc).logits
        for off, ex in ((0, a), (len(a), b)):
            alone = model(ex[None], starts=starts_of([len(ex)], len(ex))).logits
            torch.testing.assert_close(packed[0, off : off + len(ex)], alone[0], rtol=0, atol=1e-5)  # fp32 softmax sums in patch attention
        # Without the mask the second example does read the first: the test can fail.
        unmasked = model(ids, starts=starts_of([len(a), len(b)], T)[:, :T]).logits
        alone_b = model(b[None], starts=starts_of([len(b)], len(b))).logits
        assert (unmasked[0, len(a) : len(a) + len(b)] - alone_b[0]).abs().max() > 1e-3


def test_document_mask_gradients_stay_inside_the_example():
    model = random_blt({"type": "static", "stride": STRIDE}, encoder_window=4).train()
    a = encode("alpha beta gamma", bos=True, eos=True)
    b = encode("delta", bos=True, eos=True)
    batch = stack_windows([(torch.cat([a, b]).numpy(), None)], doc_ids=True)
    ids, doc = batch["ids"], batch["doc_ids"]
    emb = model.byte_embedder
    h = emb.byte_table(ids).detach().requires_grad_(True)
    # The loss of the second example's bytes only: no gradient may reach the first's inputs.
    orig = emb.byte_table.forward
    emb.byte_table.forward = lambda x: h
    try:
        logits = model(ids, starts=starts_of([len(a), len(b) - 1], ids.shape[1])[:, : ids.shape[1]], doc_ids=doc).logits
    finally:
        emb.byte_table.forward = orig
    logits[0, len(a) :].sum().backward()
    assert h.grad[0, : len(a)].abs().max() == 0
    assert h.grad[0, len(a) :].abs().max() > 0


def test_a_part_without_doc_ids_is_named():
    model = random_blt({"type": "static", "stride": STRIDE},
                       latent={"type": "transformer", "dim": 48, "n_layers": 1, "n_heads": 4})
    assert model.document_mask_blocker() is None
    from bltx.train.data_checks import check_model_for_data
    from bltx.sections import DataConfig

    class NoDocs(torch.nn.Module):
        def forward(self, x):
            return x

    model.latent = NoDocs()
    with pytest.raises(ConfigError, match="model.latent"):
        check_model_for_data(model, DataConfig(document_mask=True))


def test_plain_documents_carry_doc_ids_that_change_after_each_eos(tmp_path):
    from bltx.bytes import EOS_ID
    from bltx.data.loader import build_data
    from bltx.sections import DataConfig

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(f'{{"text": "document number {i} says hello"}}\n' for i in range(200)))
    d = build_data(DataConfig(paths=[str(corpus)], seq_len=64, document_mask=True, cache_dir=str(tmp_path / "c")))
    batch = d.train_batches(4, seed=0).read([(0, 0), (0, 1)])
    ids, doc = batch["ids"], batch["doc_ids"]
    step = doc[:, 1:] - doc[:, :-1]
    assert torch.equal(step == 1, ids[:, :-1] == EOS_ID) and (step >= 0).all()
    assert "doc_ids" not in build_data(DataConfig(paths=[str(corpus)], seq_len=64,
                                                  cache_dir=str(tmp_path / "c"))).train.batch([0])
