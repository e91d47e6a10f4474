"""Beneath a Steel Sky's speech: the RNC ProPack unpacker, the disk table and the speaker IDs."""

import json
import struct

import numpy as np
import pytest

from speechbrain_crossmamba.dataio import voice_bass
from speechbrain_crossmamba.dataio.real_voices import TEST_SPEAKERS, VALID_SPEAKERS
from speechbrain_crossmamba.dataio.voice_bass import bass, rnc_crc, rnc_unpack, sky_files


class _Packer:
    """Writes an RNC method 1 stream as its reader expects it: bits least significant first in
    16-bit little-endian words, literal bytes placed right after the word being filled."""

    def __init__(self):
        self.out, self.word, self.used, self.at = bytearray(), 0, 0, None

    def bits(self, value, n):
        for i in range(n):
            if self.used == 0:
                self.at = len(self.out)
                self.out += b"\0\0"
            self.word |= ((value >> i) & 1) << self.used
            self.used += 1
            self.out[self.at : self.at + 2] = self.word.to_bytes(2, "little")
            if self.used == 16:
                self.word, self.used = 0, 0

    def literals(self, data):
        self.out += data  # after the word being filled, or where the next word would start

    def table(self, lengths):
        self.bits(len(lengths), 5)
        for length in lengths:
            self.bits(length, 4)

    def value(self, v):
        """With eight 3-bit codes (canonical: symbol s has code s, read bit-reversed)."""
        symbol = v if v < 2 else v.bit_length()
        self.bits(int(f"{symbol:03b}"[::-1], 2), 3)
        if symbol >= 2:
            self.bits(v - (1 << (symbol - 1)), symbol - 1)


def _packed(pieces, result, chunks=None, tables=([3] * 8,) * 3):
    """``pieces``: (literal bytes, (distance, length) or None) in one chunk; or ``chunks``, a
    list of such lists, where every chunk after the first keeps the tables (empty tables)."""
    p = _Packer()
    p.bits(0, 2)
    for k, chunk in enumerate(chunks or [pieces]):
        for lengths in tables if k == 0 else ([], [], []):
            p.table(lengths)
        p.bits(len(chunk), 16)
        for literal, ref in chunk:
            p.value(len(literal))
            if literal:
                p.literals(literal)
            if ref:
                p.value(ref[0] - 1)
                p.value(ref[1] - 2)
    n = len(chunks or [pieces])
    head = b"RNC\x01" + struct.pack(">IIHHBB", len(result), len(p.out), rnc_crc(result), 0, 0, n)
    return head + bytes(p.out)


def test_rnc_unpacks_literals_back_references_and_overlapping_copies():
    result = b"abcabcab" + b"XY" + b"YYYY"
    data = _packed([(b"abc", (3, 5)), (b"XY", (1, 4)), (b"", None)], result)
    assert rnc_unpack(data) == result
    # a run of literals long enough to span words, then a copy from its start
    text = bytes(range(7, 40))
    assert rnc_unpack(_packed([(text, (33, 5)), (b"", None)], text + text[:5])) == text + text[:5]


def test_rnc_refuses_a_wrong_crc_and_a_reference_before_the_start():
    good = _packed([(b"abc", (3, 5)), (b"", None)], b"abcabcab")
    bad = bytearray(good)
    bad[12] ^= 0xFF  # the unpacked CRC
    with pytest.raises(ValueError, match="^RNC data: CRC mismatch"):
        rnc_unpack(bytes(bad))
    with pytest.raises(ValueError, match="^RNC data: a reference before the start"):
        rnc_unpack(_packed([(b"ab", (3, 2)), (b"", None)], b"ab???"))
    with pytest.raises(ValueError, match="^RNC data: longer than its header says"):
        rnc_unpack(_packed([(b"abc", (3, 60)), (b"", None)], b"abcabc"))
    with pytest.raises(ValueError, match="^RNC data: a Huffman table of over 16 symbols"):
        rnc_unpack(_packed([(b"a", None)], b"a", tables=([4] * 17, [3] * 8, [3] * 8)))
    with pytest.raises(ValueError, match="^not RNC ProPack method 1 data$"):
        rnc_unpack(b"RNC\x01\x00")


def test_rnc_chunks_after_the_first_keep_the_tables():
    text = b"chunk one, " * 2 + b"chunk two!"
    chunks = [[(b"chunk one, ", (11, 11)), (b"", None)], [(b"chunk two!", None)]]
    assert rnc_unpack(_packed(None, text, chunks=chunks)) == text


def _fake_game(tmp_path, files, marked=()):
    """sky.dnr and sky.dsk with ``{number: file bytes}``, every file at a 16-byte boundary; the
    ``marked`` numbers carry bit 22 of the size field (no usual header: pictures, palettes)."""
    dsk, dnr = bytearray(), struct.pack("<I", len(files))
    for number, data in files.items():
        dsk += bytes(-len(dsk) % 16)
        dnr += struct.pack("<H", number) + ((len(dsk) >> 4) | 0x800000).to_bytes(3, "little")
        dnr += (len(data) | (1 << 22 if number in marked else 0)).to_bytes(3, "little")
        dsk += data
    (tmp_path / "sky.dnr").write_bytes(dnr)
    (tmp_path / "sky.dsk").write_bytes(bytes(dsk))
    return tmp_path


def test_bass_reads_packed_and_plain_speech_files_with_their_speaker(tmp_path):
    plain = bytes(22) + bytes([128, 192, 64])
    samples = bytes([128, 200, 56] * 3)
    packed = bytes(22) + _packed([(samples[:3], (3, 6)), (b"", None)], samples)
    picture = bytes(range(256)) * 4
    files = {60001: plain, 50003: packed, 50007: plain, 50010: plain, 59501: picture}
    game = _fake_game(tmp_path, files, marked={59501})
    speakers = tmp_path / "speakers.json"
    labels = {"bass_s01": [50003, 50010], "bass_s02": [50007, 59501]}
    speakers.write_text(json.dumps({"speakers": labels}))
    table = sky_files((game / "sky.dnr").read_bytes())
    assert sorted(table) == [50003, 50007, 50010, 59501, 60001]
    assert table[59501][1:] == (1024, 1) and table[50003][2] == 0
    items = bass(str(game), str(speakers))
    assert [(s, k) for s, k, _ in items] == [("bass_s01", "50003"), ("bass_s02", "50007"), ("bass_s01", "50010")]
    wav, rate = items[0][2]()
    assert rate == 11025 and np.allclose(wav, (np.frombuffer(samples, np.uint8) - 128.0) / 128)
    assert items[1][2]()[0].tolist() == [0.0, 0.5, -0.5]
    assert bass(str(tmp_path / "not_installed"), str(speakers)) == []


def test_committed_speaker_table_is_disjoint_and_for_training_only():
    with open(voice_bass.BASS_SPEAKERS) as f:
        table = json.load(f)
    lines = [n for numbers in table["speakers"].values() for n in numbers]
    assert len(lines) == len(set(lines)) and all(n in voice_bass.SPEECH_FILES for n in lines)
    assert all(len(numbers) >= 20 for numbers in table["speakers"].values())
    assert not set(table["speakers"]) & set(TEST_SPEAKERS + VALID_SPEAKERS)
