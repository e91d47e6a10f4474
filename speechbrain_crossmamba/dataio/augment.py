"""Training-data variety for dynamic mixing: speed perturbation, synthetic reverberation and
babble noise.

:class:`~speechbrain_crossmamba.dataio.mixing.DynamicMixDataset` applies them per item, with
draws from the item's own generator, so an augmented epoch is as reproducible as a plain one.

- :func:`speed_perturb` plays a signal faster or slower (tempo and pitch together, as
  SpeechBrain's ``SpeedPerturb`` and Kaldi's 0.9/1.0/1.1 do): a new voice from an old one.
- :func:`synthetic_rir` draws a room impulse response: a direct path, then exponentially
  decaying Gaussian noise whose decay gives the drawn RT60 (Polack's statistical model).
- :func:`babble` sums a few utterances of other speakers into a noise.

Authors
 * speechbrain-crossmamba contributors
"""

import math

import numpy as np
import torch

_EPS = 1e-10


def speed_perturb(signal, speed):
    """``signal`` (1-D tensor) played ``speed`` times faster, by polyphase resampling.

    ``speed`` is rounded to a multiple of 0.01 (a ratio of small integers keeps the filter
    short); the output has ``round(len(signal) / speed)`` samples.

    Arguments
    ---------
    signal : torch.Tensor
        ``[T]`` signal.
    speed : float
        Speed factor, > 0 (1.1: 10 % faster and higher).

    Returns
    -------
    torch.Tensor
        ``[round(T / speed)]`` float32 signal (``signal`` itself at speed 1).

    Example
    -------
    >>> x = torch.sin(torch.arange(8000) * 0.1)
    >>> (
    ...     speed_perturb(x, 1.1).shape,
    ...     speed_perturb(x, 0.9).shape,
    ...     speed_perturb(x, 1.0) is x,
    ... )
    (torch.Size([7273]), torch.Size([8889]), True)
    >>> speed_perturb(x, 0.0)
    Traceback (most recent call last):
    ...
    ValueError: speed must be positive; got 0.0
    """
    if not speed > 0:
        raise ValueError(f"speed must be positive; got {speed}")
    down = int(round(100 * speed))
    if down == 100 or len(signal) < 2:
        return signal
    out = resample(signal.numpy().astype(np.float64), down, 100)
    return torch.from_numpy(out.astype(np.float32))


def resample(wav, in_rate, out_rate):
    """Resamples a numpy signal with scipy's polyphase filter (dtype as scipy keeps it).

    Arguments
    ---------
    wav : numpy.ndarray
        The signal, 1-D.
    in_rate, out_rate : int
        Its rate, and the rate wanted (any integers; their ratio is reduced).

    Returns
    -------
    numpy.ndarray
        About ``len(wav) * out_rate / in_rate`` samples.

    Example
    -------
    >>> len(resample(np.zeros(22050), 22050, 8000))
    8000
    """
    from scipy.signal import resample_poly

    g = math.gcd(int(out_rate), int(in_rate))
    return resample_poly(wav, int(out_rate) // g, int(in_rate) // g)


def synthetic_rir(rng, rt60, sample_rate, max_seconds=0.5):
    """A unit-peak room impulse response with reverberation time ``rt60`` seconds.

    A direct path at sample 0, then Gaussian noise decaying by 60 dB in ``rt60`` seconds,
    starting 2.5 ms after it and 10 dB below it; cut at ``min(rt60, max_seconds)``.

    Arguments
    ---------
    rng : numpy.random.Generator
        Draws the noise.
    rt60 : float
        Reverberation time in seconds, > 0.
    sample_rate : int
        Sampling rate of the response.
    max_seconds : float
        Longest response.

    Returns
    -------
    numpy.ndarray
        The float32 response.

    Example
    -------
    >>> h = synthetic_rir(np.random.default_rng(0), 0.3, 8000)
    >>> h.shape, float(h[0]), bool(abs(h).max() == 1.0)
    ((2400,), 1.0, True)
    >>> late, early = h[2000:], h[20:420]
    >>> bool(
    ...     (late**2).mean() < 1e-3 * (early**2).mean()
    ... )  # decays ~ 60 dB in 0.3 s
    True
    """
    if not rt60 > 0:
        raise ValueError(f"rt60 must be positive; got {rt60}")
    n = max(2, int(min(rt60, max_seconds) * sample_rate))
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(
        -6.9078 * t / rt60
    )  # 10^(-60/20) at t = rt60
    tail[: int(0.0025 * sample_rate) + 1] = 0.0
    tail *= 10 ** (-10 / 20) / (np.abs(tail).max() + _EPS)
    tail[0] = 1.0
    return tail.astype(np.float32)


def reverberate(signal, rir):
    """``signal`` (1-D tensor) convolved with ``rir`` (numpy), cut to the input's length.

    Arguments
    ---------
    signal : torch.Tensor
        ``[T]`` signal.
    rir : numpy.ndarray
        Room impulse response (e.g. from :func:`synthetic_rir`).

    Returns
    -------
    torch.Tensor
        ``[T]`` float32 reverberant signal.

    Example
    -------
    >>> y = reverberate(
    ...     torch.tensor([1.0, 0.0, 0.0]),
    ...     np.array([1.0, 0.5], dtype=np.float32),
    ... )
    >>> y.tolist()
    [1.0, 0.5, 0.0]
    """
    from scipy.signal import fftconvolve

    out = fftconvolve(
        signal.numpy().astype(np.float64), rir.astype(np.float64)
    )[: len(signal)]
    return torch.from_numpy(out.astype(np.float32))


def babble(utterances, length, rng, crop):
    """Unit-power noise: the sum of ``utterances`` (1-D tensors), each cropped or padded to
    ``length`` by ``crop(signal, length, rng)`` and scaled to unit power first.

    Arguments
    ---------
    utterances : list of torch.Tensor
        The talkers, 1-D.
    length : int
        Samples of the noise.
    rng : numpy.random.Generator
        Passed to ``crop``.
    crop : callable
        ``crop(signal, length, rng) -> [length]`` (e.g. ``mixing.crop_or_pad``).

    Returns
    -------
    torch.Tensor
        ``[length]`` noise of unit power.

    Example
    -------
    >>> from speechbrain_crossmamba.dataio.mixing import crop_or_pad
    >>> g = torch.Generator().manual_seed(0)
    >>> talkers = [torch.randn(900, generator=g) * k for k in (1.0, 3.0, 0.2)]
    >>> b = babble(talkers, 1000, np.random.default_rng(0), crop_or_pad)
    >>> b.shape, round(float(b.pow(2).mean()), 3)
    (torch.Size([1000]), 1.0)
    """
    total = torch.zeros(length)
    for utt in utterances:
        part = crop(utt, length, rng).float()
        total += part / part.pow(2).mean().clamp_min(_EPS).sqrt()
    return total / total.pow(2).mean().clamp_min(_EPS).sqrt()
