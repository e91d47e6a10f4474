"""The synthetic speakers of SynthSpeakers and their utterances, made with eSpeak NG.

Each speaker is a seeded combination of an English accent, a shipped ``!v`` voice variant, a
pitch base and range, a speaking rate, and a formant scale (vocal-tract length)
(:func:`speaker_params`); these are written as a generated voice file into a private overlay
of eSpeak's data folder. Sentences of 5-12 words come from the shipped ``words.txt``
(:func:`make_sentence`). Audio is trimmed, resampled, peak-normalised and dithered
(:func:`process_audio`) and written as 16-bit WAVs. ``_synthesise_all`` makes every
utterance of a corpus in a fixed order; it runs in the fresh process of
:mod:`speechbrain_crossmamba.dataio.synth_speakers`, which re-exports these names.

Authors
 * speechbrain-crossmamba contributors
"""

import os
import shutil

import numpy as np

from speechbrain_crossmamba.dataio.augment import resample

SPLITS = ("train", "valid", "test")
_ACCENT_NAMES = "en-us en en-029 en-gb-scotland en-gb-x-rp en-us-nyc en-gb-x-gbclan en-gb-x-gbcwmd"
ACCENTS = tuple(
    _ACCENT_NAMES.split()
)  # English accents, as eSpeak NG voice names
VARIANTS = {
    "male": (
        "m1",
        "m2",
        "m3",
        "m4",
        "m6",
        "m7",
        "m8",
        "john",
        "max",
        "paul",
        "robert",
    ),
    "female": (
        "f1",
        "f2",
        "f3",
        "f4",
        "f5",
        "linda",
        "belinda",
        "aunty",
        "Andrea",
        "Annie",
    ),
}
PITCH_BASE_HZ = {"male": (75.0, 135.0), "female": (150.0, 240.0)}
LEVEL = 0.5  # peak of every utterance
DITHER = 1e-4  # std of the added Gaussian dither (about 3 LSB of 16-bit)
TRIM_MARGIN_S = 0.1
ESPEAK_RATE = 22050


def _words():
    with open(os.path.join(os.path.dirname(__file__), "words.txt")) as f:
        return [w.strip() for w in f if w.strip()]


def make_sentence(rng, words, low=5, high=12):
    """A random sentence of ``low``..``high`` words from ``words``.

    Arguments
    ---------
    rng : numpy.random.Generator
        Draws the length and the words.
    words : list of str
        The vocabulary.
    low, high : int
        Fewest and most words (inclusive).

    Returns
    -------
    str
        The capitalised sentence, with a full stop.

    Example
    -------
    >>> make_sentence(np.random.default_rng(0), ["red", "cat", "sun"], 3, 3)
    'Sun cat cat.'
    """
    picked = [
        words[int(i)]
        for i in rng.integers(0, len(words), int(rng.integers(low, high + 1)))
    ]
    return " ".join(picked).capitalize() + "."


def speaker_params(seed, index):
    """The seeded voice of global speaker ``index``: gender, accent, variant, pitch, rate, formants.

    Arguments
    ---------
    seed : int
        The corpus seed.
    index : int
        The speaker's global index.

    Returns
    -------
    dict
        ``gender``, ``accent``, ``variant``, ``pitch_hz``, ``rate_wpm``, ``formant_scale``.

    Example
    -------
    >>> p = speaker_params(1234, 0)
    >>> sorted(p)
    ['accent', 'formant_scale', 'gender', 'pitch_hz', 'rate_wpm', 'variant']
    >>> p == speaker_params(1234, 0) != speaker_params(1234, 1)
    True
    """
    rng = np.random.default_rng((11, seed, index))
    gender = ("male", "female")[int(rng.integers(2))]
    base = float(rng.uniform(*PITCH_BASE_HZ[gender]))
    return {
        "gender": gender,
        "accent": ACCENTS[int(rng.integers(len(ACCENTS)))],
        "variant": VARIANTS[gender][int(rng.integers(len(VARIANTS[gender])))],
        "pitch_hz": [round(base), round(base * float(rng.uniform(1.2, 1.7)))],
        "rate_wpm": int(rng.integers(135, 206)),
        "formant_scale": round(float(rng.uniform(0.9, 1.1)), 3),
    }


def process_audio(wav, rng, sample_rate=8000, in_rate=ESPEAK_RATE):
    """Trims long silences, resamples to ``sample_rate``, peak-normalises to ``LEVEL``, dithers.

    Arguments
    ---------
    wav : numpy.ndarray
        eSpeak NG output, 1-D (a ``RuntimeError`` when silent).
    rng : numpy.random.Generator
        Draws the dither.
    sample_rate : int
        Output rate.
    in_rate : int
        Rate of ``wav``.

    Returns
    -------
    numpy.ndarray
        The float32 utterance at ``sample_rate``.

    Example
    -------
    >>> x = np.concatenate(
    ...     [np.zeros(22050), np.sin(np.arange(22050) / 5.0), np.zeros(22050)]
    ... )
    >>> y = process_audio(x.astype(np.float32), np.random.default_rng(0))
    >>> (
    ...     len(y) / 8000 < 1.25,
    ...     round(float(abs(y).max()), 2),
    ...     bool((y != 0).all()),
    ... )
    (True, 0.5, True)
    """
    loud = np.flatnonzero(np.abs(wav) > 0.01 * (np.abs(wav).max() + 1e-12))
    if len(loud) == 0:
        raise RuntimeError("eSpeak NG produced a silent utterance")
    margin = int(TRIM_MARGIN_S * in_rate)
    wav = wav[max(loud[0] - margin, 0) : loud[-1] + margin + 1].astype(
        np.float64
    )
    out = resample(wav, in_rate, sample_rate)
    out = out * (LEVEL / np.abs(out).max()) + rng.normal(0.0, DITHER, len(out))
    return out.astype(np.float32)


def _write_wav(path, wav, sample_rate):
    import soundfile

    os.makedirs(os.path.dirname(path), exist_ok=True)
    soundfile.write(path, wav, sample_rate, subtype="PCM_16")


def _speakers(config):
    """``[(spk_id, split, global_index)]`` in generation order; splits are disjoint."""
    out, k = [], 0
    for split in SPLITS:
        for j in range(config[f"n_{split}_speakers"]):
            out.append((f"{split}{j:03d}", split, k))
            k += 1
    return out


def _synthesise_all(config, partial, final):
    """Writes every utterance; returns utterance rows per split and valid/test audio."""
    from speechbrain_crossmamba.dataio import espeak

    seed, sr, words = config["seed"], config["sample_rate"], _words()
    overlay = os.path.join(partial, "_espeak-ng-data")
    espeak.make_data_overlay(overlay)
    speakers = [
        (spk, split, k, speaker_params(seed, k))
        for spk, split, k in _speakers(config)
    ]
    for spk, _, _, params in speakers:
        text = espeak.voice_file_text(
            espeak.read_variant(params["variant"]),
            spk,
            params["pitch_hz"],
            params["formant_scale"],
        )
        with open(
            os.path.join(overlay, "voices", "!v", f"sspk_{spk}"), "w"
        ) as f:
            f.write(text + "\n")
    engine = espeak.get_engine(overlay)
    rows, audio = {s: [] for s in SPLITS}, {}
    for spk, split, k, params in speakers:
        engine.set_voice(f"{params['accent']}+sspk_{spk}")
        engine.set_parameters(rate=params["rate_wpm"])
        for u in range(config["utterances_per_speaker"]):
            rng = np.random.default_rng((12, seed, k, u))
            text, espeak_seed = (
                make_sentence(rng, words),
                int(rng.integers(2**31)),
            )
            wav = process_audio(
                engine.synthesize(text, seed=espeak_seed), rng, sr
            )
            utt = f"{spk}_u{u:02d}"
            rel = os.path.join("wavs", split, spk, utt + ".wav")
            _write_wav(os.path.join(partial, rel), wav, sr)
            rows[split].append(
                [utt, f"{len(wav) / sr:.4f}", os.path.join(final, rel), spk]
            )
            if split != "train":
                audio[utt] = wav
    shutil.rmtree(overlay)
    info = {
        spk: dict(
            params,
            split=split,
            espeak_voice=f"{params['accent']}+{params['variant']}",
        )
        for spk, split, _, params in speakers
    }
    info["espeak_version"] = engine.version
    return rows, audio, info
