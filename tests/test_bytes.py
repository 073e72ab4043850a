import torch
from hypothesis import given
from hypothesis import strategies as st

from bltx.bytes import BOS_ID, EOS_ID, OFFSET, VOCAB_SIZE, decode, decode_bytes, encode


@given(st.binary(max_size=200))
def test_bytes_ids_round_trip(data):
    ids = encode(data, bos=True, eos=True)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert bool(((ids[1:-1] >= OFFSET) & (ids[1:-1] < VOCAB_SIZE)).all())
    assert decode_bytes(ids) == data


@given(st.text(max_size=100))
def test_text_round_trip(text):
    assert decode(encode(text)) == text


def test_ids_match_released_blt():
    assert encode("A").tolist() == [ord("A") + 4]
    assert VOCAB_SIZE == 260 and encode(bytes([255])).dtype == torch.long
