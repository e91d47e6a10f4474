"""Beneath a Steel Sky's speech (Debian ``beneath-a-steel-sky``, the CD version): 120 minutes
of voiced lines inside the game's data disk, and who speaks them.

The game keeps every file in ``sky.dsk``, found through ``sky.dnr``: a little-endian uint32
count, then 8-byte entries (uint16 file number; a 24-bit offset whose bit 23 says "in 16-byte
units", as on the CD version; a 24-bit size field whose low 22 bits are the size and whose bits
22 and 23 mark files stored without the usual header or packing). The speech files are the
numbers 50000..59999 without those marks (3,585 files; the 65 marked ones there are the CD
intro's pictures and palettes): a 22-byte header, then unsigned 8-bit samples at 11025 Hz, most
of them packed with RNC ProPack method 1 (:func:`rnc_unpack`, checked by its CRC; every packed
speech file of version 0.0372-8 unpacks with a matching CRC).

The game does not say who speaks a line. The speaker IDs come from ``bass_speakers.json``,
made once by ``tools/label_bass_speakers.py``: every line of 1 s or more embedded by
Resemblyzer's pretrained speaker encoder and clustered (average linkage, cosine distance
0.25); clusters of 20 lines and one minute or more are kept. On 770 clips of 27 labelled real
speakers of the other sources the same clustering gives 101 clusters, 94.9 % pure (adjusted
Rand index 0.81), so some IDs may still mix two actors and one actor may have several IDs:
this source trains only. Licence: the Beneath a Steel Sky licence (free to give away, keep its
readme; no fee for the game itself).

Authors
 * speechbrain-crossmamba contributors
"""

import json
import os
import struct

import numpy as np

BASS_DIR = "/usr/share/scummvm/beneath-a-steel-sky"
BASS_SPEAKERS = os.path.join(os.path.dirname(__file__), "bass_speakers.json")
BASS_RATE = 11025
SPEECH_FILES = range(50000, 60000)

_CRC_TABLE = []
for _i in range(256):
    _v = _i
    for _ in range(8):
        _v = (_v >> 1) ^ 0xA001 if _v & 1 else _v >> 1
    _CRC_TABLE.append(_v)


def rnc_crc(data):
    """RNC's CRC-16 (reflected polynomial 0xA001, start 0).

    Arguments
    ---------
    data : bytes
        The bytes to check.

    Returns
    -------
    int
        The CRC.

    Example
    -------
    >>> hex(rnc_crc(b"123456789"))
    '0xbb3d'
    """
    crc = 0
    for byte in data:
        crc ^= byte
        crc = (crc >> 8) ^ _CRC_TABLE[crc & 0xFF]
    return crc


class _Bits:
    """RNC method 1's bit reader: 16-bit little-endian words, least significant bit first,
    16 to 32 bits held; the newest word sits at byte ``pos``, where literal bytes start."""

    def __init__(self, data, pos):
        self.data, self.pos = data, pos
        self.bits, self.count = self._word(pos), 16

    def _word(self, pos):
        return int.from_bytes(self.data[pos : pos + 2], "little")

    def advance(self, n):
        self.bits >>= n
        self.count -= n
        if self.count < 16:
            self.pos += 2
            self.bits |= self._word(self.pos) << self.count
            self.count += 16

    def read(self, n):
        value = self.bits & ((1 << n) - 1)
        self.advance(n)
        return value

    def literals(self, n):
        """``n`` raw bytes from the stream; the bit buffer then resumes after them."""
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        self.count -= 16
        self.bits &= (1 << self.count) - 1
        self.bits |= self._word(self.pos) << self.count
        self.count += 16
        return out


def _huffman_table(bits, previous):
    """A canonical Huffman table: 5 bits of symbol count, 4 bits of code length each; codes
    are bit-reversed for the LSB-first stream. An empty table keeps the previous one."""
    count = bits.read(5)
    if not count:
        return previous
    if count > 16:
        raise ValueError(
            "RNC data: a Huffman table of over 16 symbols (corrupt file)"
        )
    lengths = [bits.read(4) for _ in range(count)]
    table, code = [], 0
    for length in range(1, max(lengths) + 1):
        for symbol, symbol_length in enumerate(lengths):
            if symbol_length == length:
                reversed_code = int(f"{code:0{length}b}"[::-1], 2)
                table.append((length, (1 << length) - 1, reversed_code, symbol))
                code += 1
        code <<= 1
    return table


def _value(bits, table):
    """One Huffman symbol ``s``; the value is ``s`` below 2, else ``2**(s-1)`` plus
    ``s - 1`` more bits."""
    for length, mask, code, symbol in table:
        if bits.bits & mask == code:
            break
    else:
        raise ValueError("RNC data: no Huffman code matches (corrupt file)")
    bits.advance(length)
    if symbol >= 2:
        return (1 << (symbol - 1)) | bits.read(symbol - 1)
    return symbol


def rnc_unpack(data):
    """Unpacks RNC ProPack method 1 data (an 18-byte ``RNC\\x01`` header: big-endian sizes
    and CRCs, then chunks of three Huffman tables, literal runs and back references).

    Arguments
    ---------
    data : bytes
        The packed bytes, header first.

    Returns
    -------
    bytes
        The unpacked bytes; a ``ValueError`` when the header is not RNC method 1 or the CRC of
        the result does not match the header's.

    Example
    -------
    >>> rnc_unpack(b"RAW")
    Traceback (most recent call last):
    ...
    ValueError: not RNC ProPack method 1 data
    """
    if data[:4] != b"RNC\x01" or len(data) < 18:
        raise ValueError("not RNC ProPack method 1 data")
    size, _, crc, _, _, chunks = struct.unpack(">IIHHBB", data[4:18])
    out = bytearray()
    bits = _Bits(data, 18)
    bits.advance(2)  # the lock and key flags
    raw = distances = lengths = []
    for _ in range(chunks):
        raw = _huffman_table(bits, raw)
        distances = _huffman_table(bits, distances)
        lengths = _huffman_table(bits, lengths)
        pieces = bits.read(16)
        while True:
            n = _value(bits, raw)
            if len(out) + n > size:
                raise ValueError(
                    "RNC data: longer than its header says (corrupt file)"
                )
            if n:
                out += bits.literals(n)
            pieces -= 1
            if pieces <= 0:
                break
            start = len(out) - _value(bits, distances) - 1
            n = _value(bits, lengths) + 2
            if len(out) + n > size:
                raise ValueError(
                    "RNC data: longer than its header says (corrupt file)"
                )
            if start < 0:
                raise ValueError(
                    "RNC data: a reference before the start (corrupt file)"
                )
            for i in range(n):  # may overlap what it writes
                out.append(out[start + i])
    out = bytes(out)
    if len(out) != size:
        raise ValueError(
            f"RNC data: {len(out)} bytes unpacked, {size} expected (corrupt file)"
        )
    if rnc_crc(out) != crc:
        raise ValueError("RNC data: CRC mismatch (corrupt file)")
    return out


def sky_files(dnr):
    """The file table of ``sky.dnr``.

    Arguments
    ---------
    dnr : bytes
        The whole ``sky.dnr``.

    Returns
    -------
    dict
        ``{file number: (offset, size, marks)}`` in ``sky.dsk``; ``marks`` are bits 22-23 of
        the size field (0 for a file with the usual header).

    Example
    -------
    >>> entry = struct.pack("<H", 50001) + (0x800001).to_bytes(3, "little")
    >>> sky_files(struct.pack("<I", 1) + entry + (300).to_bytes(3, "little"))
    {50001: (16, 300, 0)}
    """
    (count,) = struct.unpack("<I", dnr[:4])
    files = {}
    for i in range(count):
        entry = dnr[4 + 8 * i : 12 + 8 * i]
        (number,) = struct.unpack("<H", entry[:2])
        offset = int.from_bytes(entry[2:5], "little")
        size = int.from_bytes(entry[5:8], "little")
        if offset & 0x800000:
            offset = (offset & 0x7FFFFF) << 4
        files[number] = (offset, size & 0x3FFFFF, size >> 22)
    return files


def sky_speech(data):
    """One speech file of ``sky.dsk`` as float32 samples in [-1, 1) and its rate.

    Arguments
    ---------
    data : bytes
        The file: a 22-byte header, then unsigned 8-bit samples, RNC-packed or not.

    Returns
    -------
    tuple
        The samples and the rate, 11025.

    Example
    -------
    >>> wav, rate = sky_speech(bytes(22) + bytes([128, 255, 0]))
    >>> wav.tolist(), rate
    ([0.0, 0.9921875, -1.0], 11025)
    """
    body = data[22:]
    if body[:4] == b"RNC\x01":
        body = rnc_unpack(body)
    samples = np.frombuffer(body, dtype=np.uint8).astype(np.float32)
    return (samples - 128.0) / 128.0, BASS_RATE


def speech_lines(folder=BASS_DIR):
    """Every speech file of an installed game.

    Arguments
    ---------
    folder : str
        The folder of ``sky.dnr`` and ``sky.dsk``.

    Returns
    -------
    list of tuple
        ``[(file number, load)]``, ``load()`` giving :func:`sky_speech`'s result; empty when
        the game is not there.

    Example
    -------
    >>> speech_lines("/no/such/folder")
    []
    """
    dnr = os.path.join(folder, "sky.dnr")
    dsk = os.path.join(folder, "sky.dsk")
    if not (os.path.isfile(dnr) and os.path.isfile(dsk)):
        return []
    with open(dnr, "rb") as f:
        files = sky_files(f.read())

    def load(offset, size):
        with open(dsk, "rb") as f:
            f.seek(offset)
            return sky_speech(f.read(size))

    return [
        (number, lambda o=offset, s=size: load(o, s))
        for number, (offset, size, marks) in sorted(files.items())
        if number in SPEECH_FILES and not marks
    ]


def bass(folder=BASS_DIR, speakers=BASS_SPEAKERS):
    """Beneath a Steel Sky's speech lines with a speaker ID (``bass_sNN``, from ``speakers``).

    Arguments
    ---------
    folder : str
        The folder of ``sky.dnr`` and ``sky.dsk``.
    speakers : str
        The speaker table (``{"speakers": {ID: [file numbers]}}``).

    Returns
    -------
    list of tuple
        ``(speaker, key, load)`` recordings (see :mod:`.voice_packages`); empty when the game
        is not installed. Lines in no cluster are left out.

    Example
    -------
    >>> bass("/no/such/folder")
    []
    """
    with open(speakers) as f:
        table = json.load(f)["speakers"]
    who = {
        number: speaker
        for speaker, numbers in table.items()
        for number in numbers
    }
    return [
        (who[number], f"{number}", load)
        for number, load in speech_lines(folder)
        if number in who
    ]
