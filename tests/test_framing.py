"""Record framing: round trips, torn tails and damage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oplog import framing
from oplog.errors import InvalidArgument

batches_st = st.lists(st.lists(st.binary(max_size=300), min_size=1, max_size=5), max_size=8)


@given(batches_st)
def test_batches_round_trip(batches: list[list[bytes]]) -> None:
    buf = b"".join(framing.encode_batch(b) for b in batches)
    dec = framing.decode(buf)
    assert dec.payloads == [p for b in batches for p in b]
    assert dec.count == len(dec.payloads)
    assert dec.good_end == len(buf)
    assert dec.problem is None and dec.seal is None


@settings(max_examples=60)
@given(batches_st.filter(bool), st.data())
def test_any_cut_keeps_only_whole_batches(batches: list[list[bytes]], data: st.DataObject) -> None:
    encoded = [framing.encode_batch(b) for b in batches]
    buf = b"".join(encoded)
    cut = data.draw(st.integers(0, len(buf)))
    dec = framing.decode(buf[:cut])
    ends = [0]
    for e in encoded:
        ends.append(ends[-1] + len(e))
    whole = max(i for i, end in enumerate(ends) if end <= cut)
    assert dec.payloads == [p for b in batches[:whole] for p in b]
    assert dec.good_end == ends[whole]
    assert dec.problem == (None if cut == ends[whole] else "torn")


def test_single_record_layout() -> None:
    rec = framing.encode_record(b"hello", framing.FLAG_MORE)
    assert rec[0] == framing.FRAME_MAGIC and rec[1] == framing.FLAG_MORE
    assert int.from_bytes(rec[2:6], "little") == 5
    assert len(rec) == framing.HEADER_SIZE + 5
    assert framing.encode_batch([b"hello"]) == framing.encode_record(b"hello")


def test_batch_flags() -> None:
    buf = framing.encode_batch([b"a", b"b", b"c"])
    flags = [buf[i * 11 + 1] for i in range(3)]
    assert flags == [framing.FLAG_MORE, framing.FLAG_MORE, 0]


def test_empty_batch_refused() -> None:
    with pytest.raises(InvalidArgument):
        framing.encode_batch([])


def test_flip_before_a_valid_record_is_damage() -> None:
    buf = bytearray(framing.encode_batch([b"first"]) + framing.encode_batch([b"second"]))
    buf[framing.HEADER_SIZE + 1] ^= 0x10
    dec = framing.decode(bytes(buf))
    assert dec.problem == "damage" and dec.bad_offset == 0 and dec.payloads == []


def test_flip_in_last_record_is_torn() -> None:
    first = framing.encode_batch([b"first"])
    buf = bytearray(first + framing.encode_batch([b"second"]))
    buf[-1] ^= 1
    dec = framing.decode(bytes(buf))
    assert dec.problem == "torn" and dec.good_end == len(first) and dec.payloads == [b"first"]


@pytest.mark.parametrize("zeros", [1, 9, 10, 200])
def test_zero_tail_is_torn(zeros: int) -> None:
    rec = framing.encode_batch([b"x" * 20])
    dec = framing.decode(rec + bytes(zeros))
    assert dec.problem == "torn" and dec.good_end == len(rec) and dec.bad_offset == len(rec)


def test_unknown_flag_or_huge_length_is_bad() -> None:
    rec = bytearray(framing.encode_record(b"abc"))
    rec[1] = 0x80
    assert framing.frame_ok(bytes(rec), 0, len(rec)) == -1
    huge = bytes([framing.FRAME_MAGIC, 0]) + (framing.MAX_PAYLOAD + 1).to_bytes(4, "little") + bytes(4)
    assert framing.decode(huge).problem == "torn"


def test_seal_stops_decoding() -> None:
    buf = framing.encode_batch([b"a"]) + framing.encode_record(b"seal", framing.FLAG_SEAL) + b"junk"
    dec = framing.decode(buf)
    assert dec.seal == b"seal" and dec.payloads == [b"a"] and dec.good_end == len(buf) - 4
