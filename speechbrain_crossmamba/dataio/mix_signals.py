"""Mixing signals: two speakers at a given SNR, coloured noise, random crops; the utterance CSVs.

:func:`mix_at_snr` is shared by the fixed valid/test mixture lists of
:mod:`speechbrain_crossmamba.dataio.synth_speakers` and by
:class:`~speechbrain_crossmamba.dataio.mixing.DynamicMixDataset`, so that both follow one
convention: the SNR is the target's power relative to the interferer's, an optional noise sits
``noise_db`` dB relative to the two-speaker mixture, and when the mixture would clip, mixture
and target are scaled down together (the target stays the exact reference of the mixture).
:func:`read_utterance_csv` reads the utterance lists the mixing datasets draw from. All are
re-exported by :mod:`.mixing`.

Authors
 * speechbrain-crossmamba contributors
"""

import csv

import numpy as np
import torch  # noqa: F401  (used by the doctest examples)

_EPS = 1e-10


def _power(x):
    return float((x * x).mean()) + _EPS if len(x) else _EPS


def _peak(x):
    return float(abs(x).max()) if len(x) else 0.0


def mix_at_snr(target, interferer, snr_db, noise=None, noise_db=None, peak=0.9):
    """Mixes ``target`` with ``interferer`` at ``snr_db`` (target relative to interferer).

    Works alike on 1-D numpy arrays and torch tensors of one length.

    Arguments
    ---------
    target, interferer : numpy.ndarray or torch.Tensor
        1-D signals of the same length; the target keeps its level.
    snr_db : float
        Power of the target relative to the scaled interferer, in dB.
    noise : same type, optional
        A noise signal of the same length, added at ``noise_db``.
    noise_db : float, optional
        Noise power relative to the two-speaker mixture, in dB (e.g. -25: 25 dB below).
    peak : float
        If the mixture or the target would exceed this absolute value, both are scaled by
        the same factor so that neither does.

    Returns
    -------
    mix, target
        The mixture and the (possibly scaled) target, consistent with each other.

    Example
    -------
    >>> g = torch.Generator().manual_seed(0)
    >>> s, n = torch.randn(8000, generator=g), torch.randn(8000, generator=g)
    >>> mix, tgt = mix_at_snr(0.1 * s, n, snr_db=5.0)
    >>> interferer = mix - tgt
    >>> round(
    ...     10
    ...     * torch.log10(tgt.pow(2).mean() / interferer.pow(2).mean()).item(),
    ...     3,
    ... )
    5.0
    >>> mix, tgt = mix_at_snr(
    ...     s,
    ...     n,
    ...     snr_db=0.0,
    ...     noise=torch.randn(8000, generator=g),
    ...     noise_db=-25.0,
    ... )
    >>> bool(mix.abs().max() <= 0.9 + 1e-6)
    True
    >>> mix_at_snr(s, n[:10], 0.0)
    Traceback (most recent call last):
    ...
    ValueError: target and interferer must have the same length; got 8000 and 10
    """
    if len(target) != len(interferer):
        raise ValueError(
            f"target and interferer must have the same length; got {len(target)} and {len(interferer)}"
        )
    gain = (
        _power(target) / (_power(interferer) * 10.0 ** (snr_db / 10.0))
    ) ** 0.5
    mix = target + gain * interferer
    if noise is not None:
        if noise_db is None or len(noise) != len(target):
            raise ValueError(
                "noise needs noise_db and the length of the target"
            )
        mix = (
            mix
            + (_power(mix) * 10.0 ** (noise_db / 10.0) / _power(noise)) ** 0.5
            * noise
        )
    top = max(_peak(mix), _peak(target))
    if top > peak:
        mix, target = mix * (peak / top), target * (peak / top)
    return mix, target


def colored_noise(n_samples, rng, color="white", low_hz=None, sample_rate=None):
    """Unit-power white, pink (1/f power) or brown (1/f² power) Gaussian noise, float32 numpy.

    Arguments
    ---------
    n_samples : int
        Length of the noise.
    rng : numpy.random.Generator
        Draws the noise.
    color : str
        ``white``, ``pink`` or ``brown``.
    low_hz, sample_rate : float, optional
        With both, everything below ``low_hz`` is removed.

    Returns
    -------
    numpy.ndarray
        ``[n_samples]`` float32 noise of unit power.

    Example
    -------
    >>> x = colored_noise(4000, np.random.default_rng(0), "pink")
    >>> x.shape, x.dtype, round(float((x**2).mean()), 3)
    ((4000,), dtype('float32'), 1.0)
    >>> y = colored_noise(
    ...     4000, np.random.default_rng(0), "brown", low_hz=20, sample_rate=8000
    ... )
    >>> round(float(np.abs(np.fft.rfft(y)[:10]).max()), 3)  # bins below 20 Hz
    0.0
    """
    exponents = {"white": 0.0, "pink": 0.5, "brown": 1.0}
    if color not in exponents:
        raise ValueError(
            f"noise color must be one of {', '.join(exponents)}; got {color!r}"
        )
    noise = rng.standard_normal(n_samples)
    if (exponents[color] or low_hz) and n_samples > 1:
        spec = np.fft.rfft(noise)
        bins = np.arange(len(spec), dtype=np.float64)
        gain = np.maximum(bins, 1.0) ** -exponents[color]
        if low_hz:
            gain[bins * sample_rate / n_samples < low_hz] = 0.0
        noise = np.fft.irfft(spec * gain, n=n_samples)
    noise = noise - noise.mean()
    return (noise / np.sqrt((noise**2).mean() + _EPS)).astype(np.float32)


def crop_or_pad(signal, length, rng):
    """A random ``length``-sample window of ``signal``, or ``signal`` placed at a random
    offset in zeros when shorter.

    Arguments
    ---------
    signal : torch.Tensor
        1-D signal.
    length : int
        Samples of the output.
    rng : numpy.random.Generator
        Draws the offset.

    Returns
    -------
    torch.Tensor
        ``[length]`` (a view of ``signal`` when it is long enough).

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> (
    ...     crop_or_pad(torch.ones(10), 4, rng).tolist(),
    ...     int(crop_or_pad(torch.ones(3), 8, rng).sum()),
    ... )
    ([1.0, 1.0, 1.0, 1.0], 3)
    """
    n = len(signal)
    if n >= length:
        start = int(rng.integers(0, n - length + 1))
        return signal[start : start + length]
    out = signal.new_zeros(length)
    start = int(rng.integers(0, length - n + 1))
    out[start : start + n] = signal
    return out


def read_utterance_csv(path, exclude=(), columns=("duration", "wav", "spk_id")):
    """Rows ``{ID, duration, wav, spk_id}`` of an utterance CSV, without the IDs in ``exclude``.

    Arguments
    ---------
    path : str
        The CSV file.
    exclude : iterable of str
        IDs to leave out.
    columns : sequence of str
        The columns required besides ``ID`` (a ``ValueError`` when missing or no rows).

    Returns
    -------
    list of dict
        The rows (all their columns), in file order.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "u.csv")
    >>> _ = open(p, "w").write(
    ...     "ID,duration,wav,spk_id\\na,1.0,/a.wav,s1\\nb,2.0,/b.wav,s2\\n"
    ... )
    >>> [r["ID"] for r in read_utterance_csv(p, exclude={"b"})]
    ['a']
    """
    exclude = set(exclude)
    with open(path, newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["ID"] not in exclude]
    needed = ("ID",) + tuple(columns)
    if not rows or set(needed) - set(rows[0]):
        raise ValueError(
            f"{path} has no usable rows with columns {','.join(needed)}"
        )
    return rows
