"""Real recorded speech inside Debian packages: where it is, who speaks, how to decode it.

Each source is a Debian package whose files are read in place (nothing is copied or unpacked
to disk). A source lists its recordings as ``(speaker, key, load)``: ``speaker`` is this
project's speaker ID (``<source>_<voice>``), ``key`` a stable name of the recording within the
package, and ``load()`` returns ``(float32 mono samples, sample rate)``. Only natural voices are
listed; effect-processed ones (robots, aliens with vocoders, pitch-shifted monsters) and
recordings whose speaker cannot be told are left out. What was checked for each package is in
``docs/real_voices.md``. The sources made of short clips (KLettres, KTuberling) are in
:mod:`.voice_clips`.

======================  =========  ========================================  ==================
source (package)        section    speakers (how identified)                 licence
======================  =========  ========================================  ==================
``fillets_cs``          main       2: small fish ``-m-``, big fish ``-v-``   GPL-2
(fillets-ng-data-cs)               (file name code; Czech dub)
``fillets_nl``          main       2, same coding (Dutch dub, other actors)  GPL-2
(fillets-ng-data-nl)
``drascula``            main       8: file prefix (digits only: John         freeware (keep
(drascula)                         Hacker; VB, BJ, L, I, T, E, B, P)         its readme)
``fotaq``               main       Joe King (``J1``) and the conversation    freeware (keep
(flight-of-the-                    partners of each dialogue (``P1..P6``)    its readme)
amazon-queen)
``uqm``                 non-free   14 natural-sounding characters by folder  CC BY-NC-SA 2.5
(uqm-voice)                        (commander = starbase; yehat = rebels)    (non-commercial)
``klettres``            main       one per language and kind: letters        GPL-2+
(klettres-data)                    (``alpha``) or syllables (``syllab``)
``ktuberling``          main       one per language: the names of the        GPL-2+
(ktuberling-data)                  Potato Guy's objects (``sounds/<lang>``)
``bass``                main       21 clusters of speaker embeddings         BASS licence
(beneath-a-steel-sky)              (``bass_speakers.json``)                  (keep its readme)
======================  =========  ========================================  ==================

Authors
 * speechbrain-crossmamba contributors
"""

import os
import re
import struct
import subprocess
import zipfile

import numpy as np

from speechbrain_crossmamba.dataio.voice_bass import BASS_SPEAKERS, bass
from speechbrain_crossmamba.dataio.voice_clips import (
    _decode,
    _read_file,
    klettres,
    ktuberling,
)

FILLETS_SOUND = "/usr/share/games/fillets-ng/sound"
DRASCULA_DIR = "/usr/share/scummvm/drascula/en"
FOTAQ_FILE = "/usr/share/scummvm/flight-of-the-amazon-queen/queen.1c"
UQM_ZIP = "/usr/share/games/uqm/content/addons/uqm-0.8.0-voice.uqm"

# Drascula's English speech files (*.ALS): the prefix names the character. "D" mixes several
# voices and "S" holds effects; both are left out.
DRASCULA_VOICES = {
    "": "john",
    "VB": "vonbraun",
    "BJ": "bj",
    "L": "werewolf",
    "I": "igor",
    "T": "bartender",
    "E": "e",
    "B": "drunk",
    "P": "pianist",
}
# uqm-voice folders with natural-sounding voices, and the folder each one's speaker is named by
# (one actor or one character in several folders). chmmr, probe, kohrah, urquan, melnorme,
# ilwrath, umgah, shofixti (effects), zoqfotpik (several voices in one line), arilou and mycon
# (processed) are left out.
UQM_VOICES = {
    "commander": "starbase",
    "starbase": "starbase",
    "pkunk": "pkunk",
    "utwig": "utwig",
    "thraddash": "thraddash",
    "orz": "orz",
    "spathi": "spathi",
    "syreen": "syreen",
    "druuge": "druuge",
    "slylandro": "slylandro",
    "talkingpet": "talkingpet",
    "safeones": "safeones",
    "vux": "vux",
    "supox": "supox",
    "yehat": "yehat",
    "yehatrebels": "yehat",
}


def fillets(language):
    """Fish Fillets NG's spoken dialogs in ``language`` (``cs`` or ``nl``).

    File names are ``<level>-<m|v|x>-<line>.ogg``: ``m`` the small fish, ``v`` the big fish,
    ``x`` other characters and effects (left out).

    Arguments
    ---------
    language : str
        ``cs`` or ``nl``.

    Returns
    -------
    list of tuple
        ``(speaker, key, load)`` recordings (see the module docstring); empty when not
        installed.
    """
    items = []
    if not os.path.isdir(FILLETS_SOUND):
        return items
    for level in sorted(os.listdir(FILLETS_SOUND)):
        folder = os.path.join(FILLETS_SOUND, level, language)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            match = re.match(r"^[^-]+-([mv])-.+\.ogg$", name)
            if match:
                path = os.path.join(folder, name)
                voice = {"m": "small", "v": "big"}[match.group(1)]
                items.append(
                    (
                        f"fillets_{language}_{voice}",
                        f"{level}/{name}",
                        lambda p=path: _decode(_read_file(p)),
                    )
                )
    return items


def drascula_raw(data):
    """Drascula's speech: unsigned 8-bit at 11025 Hz after a 32-byte header, the last 64 bytes
    not audio.

    Arguments
    ---------
    data : bytes
        The bytes of one speech file.

    Returns
    -------
    tuple
        float32 samples in [-1, 1) and the rate, 11025.

    Example
    -------
    >>> wav, rate = drascula_raw(bytes(32) + bytes([128, 255, 0]) + bytes(64))
    >>> wav.tolist(), rate
    ([0.0, 0.9921875, -1.0], 11025)
    """
    body = np.frombuffer(data[32:-64], dtype=np.uint8)
    return (body.astype(np.float32) - 128.0) / 128.0, 11025


def drascula():
    """Drascula's English speech files, by character prefix (``DRASCULA_VOICES``).

    Returns
    -------
    list of tuple
        ``(speaker, key, load)`` recordings (see the module docstring); empty when not
        installed.
    """
    items = []
    if not os.path.isdir(DRASCULA_DIR):
        return items
    for name in sorted(os.listdir(DRASCULA_DIR)):
        match = re.match(r"^([A-Z]*)(\d+)\.ALS$", name)
        if match and match.group(1) in DRASCULA_VOICES:
            path = os.path.join(DRASCULA_DIR, name)
            items.append(
                (
                    f"drascula_{DRASCULA_VOICES[match.group(1)]}",
                    name,
                    lambda p=path: drascula_raw(_read_file(p)),
                )
            )
    return items


def fotaq_table(data):
    """The file table of a ScummVM-compressed Flight of the Amazon Queen (``queen.1c``):
    ``[(name, offset, size)]``. Header: ``QTBL``, a 5-byte version, 4 bytes of flags, a
    big-endian uint16 count, then 21-byte entries (12-byte name, bundle, offset, size).

    Arguments
    ---------
    data : bytes
        The whole ``queen.1c`` (a ``ValueError`` without the ``QTBL`` header).

    Returns
    -------
    list of tuple
        ``(name, offset, size)`` of every file.

    Example
    -------
    >>> head = b"QTBL" + b"CEM10" + bytes(4) + struct.pack(">H", 1)
    >>> fotaq_table(
    ...     head + b"020006J1.SB\\0" + b"\\1" + struct.pack(">II", 40, 7)
    ... )
    [('020006J1.SB', 40, 7)]
    """
    if data[:4] != b"QTBL":
        raise ValueError(
            "not a compressed Flight of the Amazon Queen data file (no QTBL)"
        )
    (count,) = struct.unpack(">H", data[13:15])
    table, pos = [], 15
    for _ in range(count):
        name = data[pos : pos + 12].split(b"\0")[0].decode("ascii")
        offset, size = struct.unpack(">II", data[pos + 13 : pos + 21])
        table.append((name, offset, size))
        pos += 21
    return table


def fotaq():
    """Flight of the Amazon Queen's speech (MP3 inside ``queen.1c``).

    Speech files are ``<room:2><line:4 hex><who:2>.SB``: ``J1`` is Joe King, the player
    character; ``P1``..``P6`` are the partners of the dialogue in that room, one speaker per
    ``(room, Pn)`` (a character met in several rooms becomes several speaker IDs, so this
    source is for training only). Cut-scene lines (a digit or ``S`` in place of the letter)
    do not say who speaks and are left out.

    Returns
    -------
    list of tuple
        ``(speaker, key, load)`` recordings (see the module docstring); empty when not
        installed.
    """
    if not os.path.isfile(FOTAQ_FILE):
        return []
    with open(FOTAQ_FILE, "rb") as f:
        data = f.read()
    items = []
    for name, offset, size in fotaq_table(data):
        match = re.match(r"^([0-9A-F]{2})[0-9A-F]{4}([JP])(\d)\.SB$", name)
        if not match:
            continue
        room, who, k = match.groups()
        speaker = "fotaq_joe" if who == "J" else f"fotaq_r{room}p{k}"
        items.append(
            (speaker, name, lambda o=offset, s=size: _decode(data[o : o + s]))
        )
    return items


def uqm():
    """The Ur-Quan Masters' 3DO voices (Ogg files in one zip), natural-sounding folders only.

    Returns
    -------
    list of tuple
        ``(speaker, key, load)`` recordings (see the module docstring); empty when not
        installed.
    """
    if not os.path.isfile(UQM_ZIP):
        return []
    archive = zipfile.ZipFile(UQM_ZIP)
    items = []
    for name in sorted(archive.namelist()):
        parts = name.split("/")
        if len(parts) == 3 and parts[1] in UQM_VOICES and name.endswith(".ogg"):
            items.append(
                (
                    f"uqm_{UQM_VOICES[parts[1]]}",
                    name,
                    lambda n=name: _decode(archive.read(n)),
                )
            )
    return items


# source -> (Debian package, section, licence, reader)
SOURCES = {
    "fillets_cs": (
        "fillets-ng-data-cs",
        "main",
        "GPL-2",
        lambda: fillets("cs"),
    ),
    "fillets_nl": (
        "fillets-ng-data-nl",
        "main",
        "GPL-2",
        lambda: fillets("nl"),
    ),
    "drascula": (
        "drascula",
        "main",
        "freeware (Drascula licence, keep its readme)",
        drascula,
    ),
    "fotaq": (
        "flight-of-the-amazon-queen",
        "main",
        "freeware (FOTAQ licence, keep its readme)",
        fotaq,
    ),
    "uqm": ("uqm-voice", "non-free", "CC BY-NC-SA 2.5 (non-commercial)", uqm),
    "klettres": ("klettres-data", "main", "GPL-2+", klettres),
    "ktuberling": ("ktuberling-data", "main", "GPL-2+", ktuberling),
    "bass": (
        "beneath-a-steel-sky",
        "main",
        "freeware (Beneath a Steel Sky licence, keep its readme)",
        bass,
    ),
}

# sources whose speaker IDs come from a table of this project, not from the package
SPEAKER_TABLES = {"bass": BASS_SPEAKERS}


def package_version(package):
    """The installed Debian version of ``package``, or None when it is not installed.

    Arguments
    ---------
    package : str
        The Debian package name.

    Returns
    -------
    str or None
        The version (None also off Debian, without ``dpkg-query``).

    Example
    -------
    >>> package_version("no-such-package-of-this-name") is None
    True
    """
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}|${Version}", package],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:  # not a Debian system
        return None
    status, _, version = out.stdout.partition("|")
    return (
        version
        if out.returncode == 0 and status.endswith("installed")
        else None
    )
