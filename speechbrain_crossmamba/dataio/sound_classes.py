"""Procedural sound classes of the SynthEvents corpus.

Each class has a generator ``f(rng, num_samples, sample_rate)`` that draws its own
parameters (frequencies, rates, decays) from a ``numpy.random.Generator``. Parameters vary
within a class, while the classes differ in how they are built: a steady pure tone, repeated
exponential sweeps, a steady harmonic buzz, a deeply amplitude-modulated tone, a slowly
frequency-modulated siren, narrow-band noise, bright click trains, vibrato vowels with
formants, inharmonic decaying bell partials, and groups of low damped knocks. So a model can
tell them apart from a class label alone. ``render_event`` adds a smooth attack and release
and normalises the event to unit RMS.

Everything depends only on the generator passed in: the same generator state gives the same
samples, bit for bit.

Authors
 * speechbrain-crossmamba contributors
"""

import numpy as np
from scipy.signal import fftconvolve

TWO_PI = 2.0 * np.pi
MIN_SAMPLE_RATE = 4000


def _loguniform(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _fmax(sample_rate, hi):
    """The highest frequency a class may use: ``hi``, or less near the Nyquist frequency."""
    return min(hi, 0.42 * sample_rate)


def _time(n, sample_rate):
    return np.arange(n) / sample_rate


def _ramp(n):
    """A raised-cosine rise from 0 to 1 over ``n`` samples."""
    return 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / max(n, 1))


def _pulse_train(n, positions, amplitudes):
    x = np.zeros(n)
    positions = np.asarray(positions, dtype=np.int64)
    keep = positions < n
    np.add.at(x, positions[keep], np.asarray(amplitudes)[keep])
    return x


def _harmonics(phase, amps, phases):
    """Sum of ``amps[k] * sin((k + 1) * phase + phases[k])``."""
    out = np.zeros_like(phase)
    for k, (a, p) in enumerate(zip(amps, phases)):
        out += a * np.sin((k + 1) * phase + p)
    return out


def _tone(rng, n, sr):
    f = _loguniform(rng, 250.0, _fmax(sr, 2000.0))
    return np.sin(TWO_PI * f * _time(n, sr) + rng.uniform(0, TWO_PI))


def _chirp(rng, n, sr):
    lo, hi = 200.0, _fmax(sr, 3200.0)
    octaves = rng.uniform(1.0, min(3.0, np.log2(hi / lo)))
    f_start = _loguniform(rng, lo, hi / 2**octaves)
    f_end = f_start * 2**octaves
    if rng.random() < 0.5:
        f_start, f_end = f_end, f_start
    period = int(rng.uniform(0.2, 0.7) * sr)
    length = int(period * rng.uniform(0.5, 0.85))
    u = np.arange(length) / length
    dur, ratio = length / sr, f_end / f_start
    # exponential sweep f(t) = f_start * ratio**(t / dur), integrated to a phase
    phase = TWO_PI * f_start * dur / np.log(ratio) * (ratio**u - 1.0)
    sweep = np.sin(phase) * np.sin(np.pi * u) ** 2
    x = np.zeros(n)
    for start in range(0, n, period):
        seg = sweep[: n - start]
        x[start : start + len(seg)] += seg
    return x


def _harmonic_buzz(rng, n, sr):
    f0 = _loguniform(rng, 70.0, 220.0)
    count = max(int(_fmax(sr, 3600.0) / f0), 1)
    amps = np.arange(1, count + 1) ** -rng.uniform(0.5, 1.0)
    phase = TWO_PI * f0 * _time(n, sr)
    return _harmonics(phase, amps, rng.uniform(0, TWO_PI, count))


def _tremolo(rng, n, sr):
    f = _loguniform(rng, 300.0, _fmax(sr, 1500.0))
    rate, depth = rng.uniform(4.0, 12.0), rng.uniform(0.75, 1.0)
    amps = [a for h, a in zip((1, 2, 3), (1.0, 0.4, 0.15)) if h * f < 0.45 * sr]
    t = _time(n, sr)
    carrier = _harmonics(TWO_PI * f * t, amps, rng.uniform(0, TWO_PI, 3))
    am = 1.0 - depth * (
        0.5 - 0.5 * np.cos(TWO_PI * rate * t + rng.uniform(0, TWO_PI))
    )
    return carrier * am


def _siren(rng, n, sr):
    fc = _loguniform(rng, 500.0, _fmax(sr, 1300.0))
    depth = rng.uniform(0.3, 0.7)  # peak-to-peak, in octaves
    rate = _loguniform(rng, 0.25, 2.0)
    lfo = np.sin(TWO_PI * rate * _time(n, sr) + rng.uniform(0, TWO_PI))
    if rng.random() < 0.5:  # triangle instead of sine sweep
        lfo = 2.0 / np.pi * np.arcsin(lfo)
    freq = fc * 2.0 ** (0.5 * depth * lfo)
    f_top = fc * 2.0 ** (0.5 * depth)
    amps = [
        a for h, a in zip((1, 2, 3), (1.0, 0.5, 0.25)) if h * f_top < 0.45 * sr
    ]
    return _harmonics(TWO_PI * np.cumsum(freq) / sr, amps, np.zeros(len(amps)))


def _band_noise(rng, n, sr):
    fc = _loguniform(rng, 300.0, _fmax(sr, 3000.0))
    width = rng.uniform(0.15, 0.5)  # standard deviation, in octaves
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1.0 / sr), 1.0)
    return np.fft.irfft(
        spec * np.exp(-0.5 * (np.log2(freqs / fc) / width) ** 2), n
    )


def _click_train(rng, n, sr):
    period = sr / _loguniform(rng, 4.0, 30.0)
    klen = max(int(0.003 * sr), 4)
    decay = rng.uniform(0.0004, 0.0012) * sr
    kernel = np.diff(
        rng.standard_normal(klen) * np.exp(-np.arange(klen) / decay),
        prepend=0.0,
    )
    steps = period * (1.0 + 0.03 * rng.standard_normal(int(n / period) + 2))
    positions = (rng.uniform(0, period) + np.cumsum(steps) - steps[0]).astype(
        np.int64
    )
    return np.convolve(
        _pulse_train(n, positions, np.ones(len(positions))), kernel
    )[:n]


VOWEL_FORMANTS = {
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (270.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
}


def _formant_vowel(rng, n, sr):
    vowel = sorted(VOWEL_FORMANTS)[int(rng.integers(len(VOWEL_FORMANTS)))]
    formants = np.array(VOWEL_FORMANTS[vowel]) * rng.uniform(0.95, 1.2)
    bandwidths = np.array([80.0, 100.0, 140.0]) * rng.uniform(0.8, 1.3)
    weights = np.array([1.0, 0.6, 0.3])
    f0 = _loguniform(rng, 90.0, 250.0)
    t = _time(n, sr)
    vibrato = rng.uniform(0.01, 0.03) * np.sin(
        TWO_PI * rng.uniform(4.5, 6.5) * t
    )
    glide = rng.uniform(-0.05, 0.05) * t / max(t[-1], 1e-9)
    phase = TWO_PI * np.cumsum(f0 * (1.0 + vibrato) * (1.0 + glide)) / sr
    k = np.arange(1, max(int(_fmax(sr, 3800.0) / (1.1 * f0)), 1) + 1)
    detune = ((k[:, None] * f0 - formants) / (0.5 * bandwidths)) ** 2
    amps = (0.02 + (weights / (1.0 + detune)).sum(axis=1)) / k
    return _harmonics(phase, amps, rng.uniform(0, 0.5, len(k)))


BELL_RATIOS = np.array([0.56, 0.92, 1.19, 1.71, 2.0, 2.74, 3.0, 3.76, 4.07])


def _bell(rng, n, sr):
    f = _loguniform(rng, 250.0, 900.0)
    ratios = BELL_RATIOS * rng.uniform(0.98, 1.02, len(BELL_RATIOS))
    amps = rng.uniform(0.3, 1.0, len(BELL_RATIOS))
    taus = (
        rng.uniform(0.6, 2.0) / 6.9 * ratios**-0.6
    )  # higher partials die out sooner
    keep = f * ratios < 0.45 * sr
    length = min(n, int(5.0 * taus.max() * sr))
    t = _time(length, sr)
    ir = sum(
        a * np.sin(TWO_PI * f * r * t) * np.exp(-t / tau)
        for a, r, tau in zip(amps[keep], ratios[keep], taus[keep])
    )
    attack = min(int(0.003 * sr), length)
    ir[:attack] *= _ramp(attack)
    period = int(rng.uniform(0.7, 1.8) * sr)
    positions = np.arange(0, n, period)
    strikes = _pulse_train(n, positions, rng.uniform(0.7, 1.0, len(positions)))
    return fftconvolve(strikes, ir)[:n]


def _knock(rng, n, sr):
    f, tau = _loguniform(rng, 100.0, 450.0), rng.uniform(0.008, 0.03)
    t = _time(int(6.0 * tau * sr), sr)
    thud = np.convolve(
        rng.standard_normal(len(t)) * np.exp(-t / 0.002), np.ones(3) / 3
    )
    ir = np.sin(TWO_PI * f * t) * np.exp(-t / tau) + 0.3 * thud[: len(t)]
    attack = min(int(0.001 * sr), len(t))
    ir[:attack] *= _ramp(attack)
    group_period, spacing = rng.uniform(0.8, 1.6), rng.uniform(0.1, 0.25)
    per_group = int(rng.integers(2, 5))
    starts = np.arange(0.0, n / sr, group_period)
    positions = (starts[:, None] + spacing * np.arange(per_group)).ravel() * sr
    hits = _pulse_train(
        n, positions.astype(np.int64), rng.uniform(0.7, 1.0, positions.size)
    )
    return fftconvolve(hits, ir)[:n]


GENERATORS = {
    "tone": _tone,
    "chirp": _chirp,
    "harmonic_buzz": _harmonic_buzz,
    "tremolo": _tremolo,
    "siren": _siren,
    "band_noise": _band_noise,
    "click_train": _click_train,
    "formant_vowel": _formant_vowel,
    "bell": _bell,
    "knock": _knock,
}


def _fade(rng, n, sr):
    attack = min(int(rng.uniform(0.005, 0.03) * sr), n // 4)
    release = min(int(rng.uniform(0.02, 0.1) * sr), n // 4)
    env = np.ones(n)
    env[:attack] = _ramp(attack)
    if release:
        env[n - release :] = _ramp(release)[::-1]
    return env


def render_event(name, rng, num_samples, sample_rate):
    """Renders one event of a sound class, with a smooth attack and release, at unit RMS.

    Arguments
    ---------
    name : str
        A key of ``GENERATORS``.
    rng : numpy.random.Generator
        Source of every random parameter of the event.
    num_samples : int
        Length of the event.
    sample_rate : int
        Sampling rate in Hz, at least 4000.

    Returns
    -------
    numpy.ndarray
        float32 [num_samples].

    Example
    -------
    >>> x = render_event("bell", np.random.default_rng(0), 8000, 8000)
    >>> (
    ...     x.shape,
    ...     x.dtype,
    ...     round(float(np.sqrt(np.mean(x.astype(float) ** 2))), 3),
    ... )
    ((8000,), dtype('float32'), 1.0)
    >>> bool(abs(x[0]) < 1e-3 and abs(x[-1]) < 1e-3)
    True
    >>> render_event("drum", np.random.default_rng(0), 8000, 8000)
    Traceback (most recent call last):
    ...
    ValueError: unknown sound class 'drum'; known: tone, chirp, harmonic_buzz, ...
    """
    if name not in GENERATORS:
        raise ValueError(
            f"unknown sound class {name!r}; known: {', '.join(GENERATORS)}"
        )
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be positive; got {num_samples}")
    if sample_rate < MIN_SAMPLE_RATE:
        raise ValueError(
            f"sample_rate must be at least {MIN_SAMPLE_RATE} Hz; got {sample_rate}"
        )
    n = int(num_samples)
    x = GENERATORS[name](rng, n, sample_rate) * _fade(rng, n, sample_rate)
    rms = np.sqrt(np.mean(x**2))
    if rms > 0:
        x = x / rms
    return x.astype(np.float32)
