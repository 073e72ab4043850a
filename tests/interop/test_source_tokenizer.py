"""A source model's byte-level BPE tokenizer read at the byte level (issue 23): tokens as
exact bytes, token starts over a byte stream, the longest vocabulary token ending at each
byte; checked against the `tokenizers` library's own encoding and a brute-force search."""

import json

import pytest

tokenizers = pytest.importorskip("tokenizers")

from bltx.errors import CheckpointError, DataError  # noqa: E402
from bltx.interop.source_tokenizer import SourceTokenizer, byte_level_alphabet  # noqa: E402

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
        "Café naïve — ☃ 日本語 ünïcödé, tabs\tand  spaces.\n") * 20
PROBE = "Speak, naïve Citizen — ☃ 日本\tnew words: zyxqv ünï.\n"


def save_tokenizer(folder, byte_level=True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if byte_level:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:  # SentencePiece-style: words marked with U+2581
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        alphabet = []
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=alphabet,
                                  special_tokens=["<|endoftext|>", "<unk>"], show_progress=False)
    tok.train_from_iterator([TEXT], trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    return folder


def test_the_alphabet_is_gpt2s_one_to_one_byte_map():
    alphabet = byte_level_alphabet()
    assert sorted(alphabet.values()) == list(range(256)) and len(alphabet) == 256
    assert alphabet["A"] == ord("A") and alphabet["\u0120"] == ord(" ") and alphabet["\u010a"] == ord("\n")


def test_tokens_spell_out_the_bytes_and_starts_follow_them(tmp_path):
    from tokenizers import Tokenizer

    tok = SourceTokenizer(save_tokenizer(tmp_path / "src"))
    reference = Tokenizer.from_file(str(tmp_path / "src" / "tokenizer.json"))
    ids = reference.encode(PROBE, add_special_tokens=False).ids
    assert tok.encode(PROBE) == ids
    data = PROBE.encode("utf-8")
    pieces = [tok.token_bytes[i] for i in ids]
    assert b"".join(pieces) == data
    # a token may hold part of a multi-byte character: the bytes are exact, not characters
    assert reference.decode(ids) == PROBE
    starts = tok.token_starts(PROBE)
    assert starts.shape == (len(data),) and starts.sum() == len(ids)
    assert [int(i) for i in starts.nonzero()[0]] == [sum(map(len, pieces[:k])) for k in range(len(pieces))]
    assert all(tok.token_bytes[i] is None for i in (reference.token_to_id("<|endoftext|>"), reference.token_to_id("<unk>")))


def test_longest_token_ending_at_each_byte_matches_a_brute_force_search(tmp_path):
    tok = SourceTokenizer(save_tokenizer(tmp_path / "src"))
    data = PROBE.encode("utf-8")
    got = tok.longest_token_ending(PROBE)
    for t in range(len(data)):
        best = max((len(b), i) for i, b in enumerate(tok.token_bytes) if b and data[: t + 1].endswith(b))
        assert tok.token_bytes[got[t]] is not None and len(tok.token_bytes[got[t]]) == best[0], t
    assert (got >= 0).all()  # every byte is a token of a byte-level vocabulary


def test_other_tokenizers_and_changed_text_are_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="not a byte-level BPE tokenizer .pre-tokenizer/decoder 'Metaspace'") as info:
        SourceTokenizer(save_tokenizer(tmp_path / "sp", byte_level=False))
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="no tokenizer.json in"):
        SourceTokenizer(tmp_path)
    folder = save_tokenizer(tmp_path / "nfkc")
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec["normalizer"] = {"type": "NFKC"}
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(DataError, match="changes the text"):
        SourceTokenizer(folder).encode("ﬁne")  # NFKC folds the ligature into "fi"
