"""SynthEvents mixtures: one mixture of procedural sound events, drawn from its own seed, and
the multi-hot class clue.

:func:`make_mixture` draws 2 to 4 events of distinct classes of ``CLASSES`` (rendered by
:mod:`.sound_classes`) at random onsets, lengths and gains over pink or brown background
noise, from ``numpy.random.default_rng((seed, split_code, epoch, index))``, so a mixture is
bit-exact per (seed, split, epoch, index). :func:`labels_to_multihot` turns class names into
the clue. The sets built on them are in :mod:`.synth_events`, which re-exports these names;
a change of the generated audio needs a bump of its ``FORMAT_VERSION``.

Authors
 * speechbrain-crossmamba contributors
"""

import operator

import numpy as np
import torch

from speechbrain_crossmamba.dataio.mix_signals import colored_noise
from speechbrain_crossmamba.dataio.sound_classes import (
    GENERATORS,
    MIN_SAMPLE_RATE,
    render_event,
)

CLASSES = tuple(GENERATORS)
SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}
MIN_EVENT_SECONDS = 0.5
GAIN_SPREAD_DB = 6.0
BACKGROUND_DB_BELOW = (15.0, 30.0)
PEAK_RANGE = (0.5, 0.9)


def _nonneg_int(name, value):
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(
            f"{name} must be a non-negative integer; got {value!r}"
        ) from None
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer; got {value}")
    return value


def _check_config(
    seconds, sample_rate, min_events, max_events, multi_target_prob
):
    if not seconds > 0:
        raise ValueError(f"seconds must be positive; got {seconds}")
    if sample_rate < MIN_SAMPLE_RATE:
        raise ValueError(
            f"sample_rate must be at least {MIN_SAMPLE_RATE} Hz; got {sample_rate}"
        )
    if not 1 <= min_events <= max_events <= len(CLASSES):
        raise ValueError(
            f"need 1 <= min_events <= max_events <= {len(CLASSES)}; "
            f"got min_events={min_events}, max_events={max_events}"
        )
    if not 0.0 <= multi_target_prob <= 1.0:
        raise ValueError(
            f"multi_target_prob must be in [0, 1]; got {multi_target_prob}"
        )


def _background(rng, num_samples, sample_rate):
    """Pink (1/f power) or brown (1/f^2 power) noise above 20 Hz, at unit RMS."""
    color = "pink" if rng.random() < 0.5 else "brown"
    return colored_noise(
        num_samples, rng, color, low_hz=20.0, sample_rate=sample_rate
    )


def _render_mixture(
    seed,
    index,
    seconds,
    sample_rate,
    min_events,
    max_events,
    multi_target_prob,
    split,
    epoch,
):
    """The mixture with its parts: ``make_mixture``'s dict plus ``events`` [n_events, T]
    (scaled as the mixture), ``target_rows`` and ``noise``."""
    if split not in SPLIT_CODES:
        raise ValueError(
            f"unknown split {split!r}; known: {', '.join(SPLIT_CODES)}"
        )
    key = (
        _nonneg_int("seed", seed),
        SPLIT_CODES[split],
        _nonneg_int("epoch", epoch),
        _nonneg_int("index", index),
    )
    _check_config(
        seconds, sample_rate, min_events, max_events, multi_target_prob
    )
    rng = np.random.default_rng(key)
    total = max(round(seconds * sample_rate), 1)
    min_len = min(total, round(MIN_EVENT_SECONDS * sample_rate))

    two = (
        rng.random() < multi_target_prob and max_events >= 3
    )  # two target classes
    n_events = int(
        rng.integers(max(min_events, 3) if two else min_events, max_events + 1)
    )
    classes = np.sort(rng.choice(len(CLASSES), size=n_events, replace=False))
    gains = 10.0 ** (rng.uniform(-0.5, 0.5, n_events) * GAIN_SPREAD_DB / 20.0)
    events = np.zeros((n_events, total))
    for row, (cls, gain) in enumerate(zip(classes, gains)):
        length = int(rng.integers(min_len, total + 1))
        onset = int(rng.integers(0, total - length + 1))
        event = render_event(CLASSES[cls], rng, length, sample_rate)
        events[row, onset : onset + length] = gain * event.astype(np.float64)

    target_rows = np.sort(
        rng.choice(n_events, size=2 if two else 1, replace=False)
    )
    below_db = rng.uniform(*BACKGROUND_DB_BELOW)
    noise = (
        _background(rng, total, sample_rate)
        * gains.mean()
        * 10.0 ** (-below_db / 20.0)
    )

    mix = events.sum(axis=0) + noise
    target = events[target_rows].sum(axis=0)
    scale = rng.uniform(*PEAK_RANGE) / max(
        np.abs(mix).max(), np.abs(target).max()
    )
    return {
        "mix": (scale * mix).astype(np.float32),
        "target": (scale * target).astype(np.float32),
        "labels": [CLASSES[classes[r]] for r in target_rows],
        "classes_present": [CLASSES[c] for c in classes],
        "events": scale * events,
        "target_rows": target_rows,
        "noise": scale * noise,
    }


def make_mixture(
    seed,
    index,
    seconds=4.0,
    sample_rate=8000,
    min_events=2,
    max_events=4,
    multi_target_prob=0.25,
    split="train",
    epoch=0,
):
    """Makes one SynthEvents mixture, bit-exact per (seed, split, epoch, index).

    Arguments
    ---------
    seed : int
        Corpus seed (non-negative).
    index : int
        Mixture index (non-negative).
    seconds : float
        Clip length.
    sample_rate : int
        Sampling rate in Hz (at least 4000).
    min_events, max_events : int
        Range of the number of events (of distinct classes) in the mixture.
    multi_target_prob : float
        Probability that the clue names two classes; the mixture then holds at least three
        events (if ``max_events`` allows; otherwise the clue is one class).
    split : str
        "train", "valid" or "test"; each split draws from its own random streams.
    epoch : int
        Training epoch; gives a fresh set of training mixtures per epoch.

    Returns
    -------
    dict
        "mix" and "target" (float32 [T], peaks below 0.9), "labels" (the target classes) and
        "classes_present" (all classes in the mixture), both in ``CLASSES`` order.

    Example
    -------
    >>> m = make_mixture(seed=1, index=0, seconds=1.0)
    >>> m["mix"].shape, m["mix"].dtype
    ((8000,), dtype('float32'))
    >>> (
    ...     set(m["labels"]) <= set(m["classes_present"]),
    ...     2 <= len(m["classes_present"]) <= 4,
    ... )
    (True, True)
    >>> bool((make_mixture(1, 0, seconds=1.0)["mix"] == m["mix"]).all())
    True
    """
    out = _render_mixture(
        seed,
        index,
        seconds,
        sample_rate,
        min_events,
        max_events,
        multi_target_prob,
        split,
        epoch,
    )
    return {k: out[k] for k in ("mix", "target", "labels", "classes_present")}


def labels_to_multihot(labels, classes=CLASSES):
    """Turns class names into a multi-hot clue vector.

    Arguments
    ---------
    labels : list of str or str
        Class names, or one string of space-separated names (as in the CSVs).
    classes : sequence of str
        The class order of the vector.

    Returns
    -------
    torch.Tensor
        float32 [len(classes)], 1 at the named classes.

    Example
    -------
    >>> labels_to_multihot("tone bell")[:3]
    tensor([1., 0., 0.])
    >>> labels_to_multihot(["bell", "tone"]).sum().item()
    2.0
    >>> labels_to_multihot("xyz")
    Traceback (most recent call last):
    ...
    ValueError: unknown label 'xyz'; known: tone, chirp, harmonic_buzz, ...
    """
    if isinstance(labels, str):
        labels = labels.split()
    labels = list(labels)
    if not labels:
        raise ValueError("labels is empty; name at least one class")
    vec = torch.zeros(len(classes))
    for label in labels:
        if label not in classes:
            raise ValueError(
                f"unknown label {label!r}; known: {', '.join(classes)}"
            )
        vec[list(classes).index(label)] = 1.0
    return vec
