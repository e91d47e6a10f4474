"""Real voices recorded as short clips (a word, a letter, a syllable): KLettres and KTuberling.

Both KDE educational programs ship words or letters read by a native speaker of each of their
languages, one clip of about 1 s each. One folder of clips is one speaker ID. Clips are trimmed
to their sound and joined ``CLIPS`` at a time, ``gap_s`` apart, into recordings that RealVoices
cuts at their pauses like any line (see :mod:`.voice_packages` for the recording contract and
``docs/real_voices.md`` for what each package holds). Whether two folders (say KLettres' and
KTuberling's of one language) are one person was not checked, so these sources train only.

Authors
 * speechbrain-crossmamba contributors
"""

import io
import os

import numpy as np

from speechbrain_crossmamba.dataio.augment import resample

KLETTRES_DIR = "/usr/share/klettres"
KTUBERLING_DIR = "/usr/share/ktuberling/sounds"
CLIPS = 8  # clips joined into one recording
CLIP_RATE = 16000  # their common rate (the packages mix 22.05 to 128 kHz)
KLETTRES_RATE = CLIP_RATE  # the name used before KTuberling was added


def _decode(data):
    """Samples and rate of an audio file given as bytes (libsndfile: Ogg, Opus, MP3, WAV)."""
    import soundfile

    wav, rate = soundfile.read(
        io.BytesIO(data), dtype="float32", always_2d=True
    )
    return wav.mean(axis=1), rate


def _read_file(path):
    with open(path, "rb") as f:
        return f.read()


def _joined_clips(paths, gap_s=0.3, floor=0.01, margin_s=0.05):
    """Clips decoded, resampled to ``CLIP_RATE``, trimmed to their sound (samples above
    ``floor`` of the clip's peak, with ``margin_s`` around) and joined ``gap_s`` apart."""
    parts, margin = [], int(margin_s * CLIP_RATE)
    for path in paths:
        wav, rate = _decode(_read_file(path))
        wav = resample(wav, rate, CLIP_RATE)
        loud = np.flatnonzero(
            np.abs(wav) > floor * np.abs(wav).max(initial=0.0)
        )
        if len(loud) == 0:
            continue  # a silent clip
        wav = wav[max(0, loud[0] - margin) : loud[-1] + margin]
        parts += [
            wav.astype(np.float32),
            np.zeros(int(gap_s * CLIP_RATE), np.float32),
        ]
    return (
        np.concatenate(parts) if parts else np.zeros(0, np.float32)
    ), CLIP_RATE


def clip_folder(speaker, key, folder, extensions):
    """The recordings of one folder of clips: ``CLIPS`` clips each, in name order.

    Arguments
    ---------
    speaker : str
        The speaker ID of every recording.
    key : str
        The key prefix (each recording's key is ``<key>/<first clip index>``).
    folder : str
        The folder of clips.
    extensions : tuple of str
        The file endings that are clips.

    Returns
    -------
    list of tuple
        ``(speaker, key, load)`` recordings.

    Example
    -------
    >>> clip_folder("x", "x", "/no/such/folder", (".ogg",))
    []
    """
    if not os.path.isdir(folder):
        return []
    names = sorted(n for n in os.listdir(folder) if n.endswith(extensions))
    items = []
    for start in range(0, len(names), CLIPS):
        paths = [os.path.join(folder, n) for n in names[start : start + CLIPS]]
        items.append(
            (speaker, f"{key}/{start:04d}", lambda p=paths: _joined_clips(p))
        )
    return items


def klettres():
    """KLettres' letters and syllables, read by a native speaker of each language.

    ``<lang>/alpha/*.ogg`` (letters) and ``<lang>/syllab/*.ogg`` (syllables) are one speaker
    ID each (whether both kinds of a language are one person was not checked).

    Returns
    -------
    list of tuple
        ``(speaker, key, load)`` recordings (see :mod:`.voice_packages`); empty when not
        installed.
    """
    if not os.path.isdir(KLETTRES_DIR):
        return []
    items = []
    for lang in sorted(os.listdir(KLETTRES_DIR)):
        for kind in ("alpha", "syllab"):
            folder = os.path.join(KLETTRES_DIR, lang, kind)
            items += clip_folder(
                f"klettres_{lang}_{kind}", f"{lang}/{kind}", folder, (".ogg",)
            )
    return items


def ktuberling():
    """KTuberling's spoken object names (``sounds/<lang>/``), one speaker ID per language.

    The ``sr@…`` folders (Serbian in other scripts) hold the ``sr`` recordings again and are
    skipped.

    Returns
    -------
    list of tuple
        ``(speaker, key, load)`` recordings (see :mod:`.voice_packages`); empty when not
        installed.
    """
    if not os.path.isdir(KTUBERLING_DIR):
        return []
    items = []
    for lang in sorted(os.listdir(KTUBERLING_DIR)):
        if "@" in lang:
            continue
        folder = os.path.join(KTUBERLING_DIR, lang)
        items += clip_folder(
            f"ktuberling_{lang}", lang, folder, (".ogg", ".opus", ".wav")
        )
    return items
