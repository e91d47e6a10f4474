"""Building the RealVoices corpus: recorded lines cut into utterances, written with their
mixture lists.

Each recording is resampled to the corpus rate, cut at its pauses into utterances of
``min_seconds``..``max_seconds`` (:func:`cut_utterances`) and normalised to one speech level
(:func:`normalise`); ``_build`` writes the utterances of every speaker into its split, the
fixed valid/test mixture lists in SynthSpeakers' format, ``speakers.json`` and the
``manifest.json``. The corpus is prepared (found, or built once) by
:func:`~speechbrain_crossmamba.dataio.real_voices.prepare_real_voices`; that module
re-exports these names.

Authors
 * speechbrain-crossmamba contributors
"""

import hashlib
import json
import math
import os
import shutil

import numpy as np

from speechbrain_crossmamba.dataio import synth_speakers as synth
from speechbrain_crossmamba.dataio.augment import resample
from speechbrain_crossmamba.dataio.voice_packages import SOURCES

FORMAT_VERSION = 1
FRAME_S = 0.02
LEVEL_RMS = 0.1  # RMS of the voiced frames of every utterance (-20 dBFS)
PEAK = 0.9
INSTALL_HINT = "sudo bash tools/install_voices.sh"


def _frame_db(wav, rate):
    """Per-frame energy in dB (20 ms frames)."""
    hop = max(1, int(FRAME_S * rate))
    n = len(wav) // hop
    frames = wav[: n * hop].reshape(n, hop).astype(np.float64)
    return 10.0 * np.log10((frames**2).mean(axis=1) + 1e-12), hop


def cut_utterances(
    wav, rate, min_seconds=1.5, max_seconds=8.0, floor_db=40.0, pause_s=0.15
):
    """Cuts a recorded line into utterances at its pauses.

    A frame is silent when it is more than ``floor_db`` below the line's loudest frame; runs
    of at least ``pause_s`` of silence are the possible cuts. Voiced stretches are joined
    until the next would pass ``max_seconds`` (a stretch longer than that is cut in
    ``max_seconds`` pieces); pieces shorter than ``min_seconds`` are dropped. Each utterance
    keeps 50 ms of margin around its voiced frames.

    Arguments
    ---------
    wav : numpy.ndarray
        The recorded line, 1-D.
    rate : int
        Its sampling rate.
    min_seconds, max_seconds : float
        Shortest and longest utterance.
    floor_db : float
        Silence threshold below the loudest frame, in dB.
    pause_s : float
        Shortest pause that may be cut, in seconds.

    Returns
    -------
    list of tuple
        ``(start, stop)`` sample indices of the utterances.

    Example
    -------
    >>> rate = 8000
    >>> t = np.arange(rate * 2) / rate
    >>> tone = np.sin(2 * np.pi * 200 * t).astype(np.float32)
    >>> line = np.concatenate(
    ...     [np.zeros(4000), tone, np.zeros(4000), tone, np.zeros(800)]
    ... )
    >>> cut_utterances(line, rate, max_seconds=3.0)
    [(3600, 20400), (23600, 40400)]
    >>> cut_utterances(line, rate, max_seconds=6.0)
    [(3600, 40400)]
    """
    db, hop = _frame_db(wav, rate)
    if len(db) == 0:
        return []
    voiced = db > db.max() - floor_db
    pause = max(1, int(round(pause_s / FRAME_S)))
    stretches, start, quiet = [], None, 0  # voiced stretches [a, b) in frames
    for k, v in enumerate(voiced):
        if v:
            start = k if start is None else start
            quiet, end = 0, k + 1
        elif start is not None:
            quiet += 1
            if quiet >= pause:
                stretches.append((start, end))
                start = None
    if start is not None:
        stretches.append((start, end))
    longest, shortest = (
        int(max_seconds / FRAME_S),
        int(math.ceil(min_seconds / FRAME_S)),
    )
    pieces = []
    for a, b in stretches:  # split over-long stretches
        pieces += [(s, min(s + longest, b)) for s in range(a, b, longest)]
    merged = []
    for a, b in pieces:
        if merged and b - merged[-1][0] <= longest:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    margin = int(0.05 * rate)
    return [
        (max(a * hop - margin, 0), min(b * hop + margin, len(wav)))
        for a, b in merged
        if b - a >= shortest
    ]


def normalise(wav, rate):
    """Scales an utterance so that its voiced frames have RMS ``LEVEL_RMS`` (peak at most
    ``PEAK``).

    Arguments
    ---------
    wav : numpy.ndarray
        The utterance, 1-D.
    rate : int
        Its sampling rate.

    Returns
    -------
    numpy.ndarray
        The scaled float32 utterance.

    Example
    -------
    >>> x = np.concatenate([np.zeros(800), 0.01 * np.ones(1600)]).astype(
    ...     np.float32
    ... )
    >>> y = normalise(x, 8000)
    >>> round(float(np.sqrt((y[800:] ** 2).mean())), 3)
    0.1
    """
    db, hop = _frame_db(wav, rate)
    voiced = db > db.max() - 30.0
    frames = wav[: len(db) * hop].reshape(len(db), hop)[voiced]
    gain = LEVEL_RMS / (np.sqrt((frames.astype(np.float64) ** 2).mean()) + 1e-9)
    gain = min(gain, PEAK / (np.abs(wav).max() + 1e-9))
    return (wav * gain).astype(np.float32)


def _utterances(load, rate, config):
    """The processed utterances of one recording (8 kHz float32 arrays)."""
    wav, in_rate = load()
    wav = wav - wav.mean() if len(wav) else wav
    if len(wav) < in_rate * config["min_seconds"] or not np.isfinite(wav).all():
        return []
    wav = resample(wav.astype(np.float64), in_rate, rate).astype(np.float32)
    cuts = cut_utterances(
        wav, rate, config["min_seconds"], config["max_seconds"]
    )
    return [normalise(wav[a:b], rate) for a, b in cuts]


def _build(config, versions, final):
    """Writes the corpus into ``<final>.partial`` and renames it to ``final``."""
    partial = final + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    rate, splits = config["sample_rate"], {}
    for spk in config["test_speakers"]:
        splits[spk] = "test"
    for spk in config["valid_speakers"]:
        splits[spk] = "valid"
    by_speaker = {}
    for source in versions:
        for speaker, key, load in SOURCES[source][3]():
            by_speaker.setdefault(speaker, []).append((key, load))
    rows, audio, info = {s: [] for s in synth.SPLITS}, {}, {}
    for speaker in sorted(by_speaker):
        split = splits.get(speaker, "train")
        rng = np.random.default_rng(
            (
                21,
                config["seed"],
                int(hashlib.md5(speaker.encode()).hexdigest()[:8], 16),
            )
        )
        recordings = by_speaker[speaker]
        order = rng.permutation(len(recordings))
        kept, seconds = [], 0.0
        for index in order:
            key, load = recordings[index]
            for j, wav in enumerate(_utterances(load, rate, config)):
                kept.append((key, j, wav))
            if len(kept) >= config["max_utterances_per_speaker"]:
                break
        kept = kept[: config["max_utterances_per_speaker"]]
        if len(kept) < config["min_utterances_per_speaker"]:
            continue
        for u, (key, j, wav) in enumerate(kept):
            utt = f"{speaker}_u{u:03d}"
            rel = os.path.join("wavs", split, speaker, utt + ".wav")
            synth._write_wav(os.path.join(partial, rel), wav, rate)
            rows[split].append(
                [
                    utt,
                    f"{len(wav) / rate:.4f}",
                    os.path.join(final, rel),
                    speaker,
                ]
            )
            seconds += len(wav) / rate
            if split != "train":
                audio[utt] = wav
        info[speaker] = {
            "split": split,
            "utterances": len(kept),
            "minutes": round(seconds / 60, 2),
            "source_files": sorted({k for k, _, _ in kept}),
        }
    for split in synth.SPLITS:
        if len({r[3] for r in rows[split]}) < 2:
            raise RuntimeError(
                f"RealVoices: fewer than 2 {split} speakers found; install: {INSTALL_HINT}"
            )
        synth._write_csv(
            os.path.join(partial, f"{split}_utts.csv"),
            synth.UTT_HEADER,
            rows[split],
        )
    mix_config = dict(config, noise=True)
    for split in ("valid", "test"):
        mixes = synth._mixtures(
            mix_config, split, rows[split], audio, partial, final
        )
        synth._write_csv(
            os.path.join(partial, f"{split}.csv"), synth.MIX_HEADER, mixes
        )
    with open(os.path.join(partial, "speakers.json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
    manifest = {
        "format": FORMAT_VERSION,
        "config": config,
        "root": final,
        "packages": {
            s: {
                "package": SOURCES[s][0],
                "version": v,
                "section": SOURCES[s][1],
                "licence": SOURCES[s][2],
            }
            for s, v in versions.items()
        },
        "speakers": {
            s: sorted(k for k, v in info.items() if v["split"] == s)
            for s in synth.SPLITS
        },
        "minutes": {
            s: round(sum(float(r[1]) for r in rows[s]) / 60, 2)
            for s in synth.SPLITS
        },
        "digest": synth._digest(partial),
    }
    with open(os.path.join(partial, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    os.replace(partial, final)
