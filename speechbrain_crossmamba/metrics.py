"""Metrics of target extraction: SI-SNR(i), SDR(i), PESQ/STOI, and a speaker-verification EER.

SI-SNR is computed here (masked by the true lengths of padded batches; SpeechBrain's
``cal_si_snr`` assumes unpadded signals and edits its input in place). SDR is BSS Eval's, from
``mir_eval`` (the implementation SpeechBrain's separation recipes report), with one reference.
PESQ (ITU-T P.862, the ``pesq`` package) and STOI (``pystoi``) are the optional ``[metrics]``
extra: :func:`perceptual_metrics` returns them where both are installed, and nothing otherwise.
All are re-exported by :mod:`.evaluation`.

Authors
 * speechbrain-crossmamba contributors
"""

import csv
import os  # noqa: F401  (used by the doctest examples)

import numpy as np
import torch

EPS = 1e-8


def si_snr(estimate, target, lengths=None):
    """Scale-invariant SNR in dB of each row of a batch.

    Arguments
    ---------
    estimate : torch.Tensor
        Estimated signals ``[B, T]``.
    target : torch.Tensor
        Reference signals ``[B, T]``.
    lengths : torch.Tensor, optional
        Relative lengths ``(B,)``; samples beyond them are ignored.

    Returns
    -------
    torch.Tensor
        ``[B]`` SI-SNR in dB (float32). Inputs are not modified.

    Example
    -------
    >>> phase = torch.arange(800) * 2 * torch.pi / 100
    >>> t, n = (
    ...     torch.sin(phase).expand(2, -1),
    ...     torch.cos(phase).expand(2, -1),
    ... )  # orthogonal
    >>> si_snr(
    ...     2 * t + 0.2 * n, t
    ... ).round()  # the scale does not count; 0.1 of noise: 20 dB
    tensor([20., 20.])
    >>> padded = torch.cat([t, torch.randn(2, 200)], dim=1)
    >>> torch.allclose(
    ...     si_snr(
    ...         padded,
    ...         torch.cat([t, torch.zeros(2, 200)], 1),
    ...         torch.tensor([0.8, 0.8]),
    ...     ),
    ...     si_snr(t, t),
    ... )
    True
    """
    estimate, target = estimate.float(), target.float()
    B, T = target.shape
    if lengths is None:
        mask = torch.ones_like(target)
    else:
        samples = torch.round(lengths.to(target.device).float() * T).clamp(
            min=1
        )
        mask = (
            torch.arange(T, device=target.device)[None] < samples[:, None]
        ).float()
    count = mask.sum(1, keepdim=True)
    estimate = (
        estimate - (estimate * mask).sum(1, keepdim=True) / count
    ) * mask
    target = (target - (target * mask).sum(1, keepdim=True) / count) * mask
    dot = (estimate * target).sum(1, keepdim=True)
    projection = dot * target / ((target**2).sum(1, keepdim=True) + EPS)
    noise = estimate - projection
    ratio = (projection**2).sum(1) / ((noise**2).sum(1) + EPS)
    return 10 * torch.log10(ratio + EPS)


def sdr(estimate, target):
    """BSS Eval SDR in dB of one estimate against one reference (``mir_eval``).

    Arguments
    ---------
    estimate : torch.Tensor or numpy.ndarray
        ``[T]`` estimate.
    target : torch.Tensor or numpy.ndarray
        ``[T]`` reference (not silent).

    Returns
    -------
    float
        The SDR in dB.

    Example
    -------
    >>> t = torch.randn(4000)
    >>> sdr(t + 0.1 * torch.randn(4000), t) > 15
    True
    """
    import warnings

    from mir_eval.separation import bss_eval_sources

    est = np.asarray(torch.as_tensor(estimate).detach().float().cpu())[None]
    ref = np.asarray(torch.as_tensor(target).detach().float().cpu())[None]
    # mir_eval 0.8 announces a move of bss_eval; pinned to 0.8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return float(
            bss_eval_sources(ref, est, compute_permutation=False)[0][0]
        )


def utterance_metrics(estimate, target, mixture):
    """SI-SNR, SI-SNRi, SDR and SDRi of one utterance (``[T]`` tensors, true length).

    Arguments
    ---------
    estimate : torch.Tensor
        ``[T]`` estimate.
    target : torch.Tensor
        ``[T]`` reference.
    mixture : torch.Tensor
        ``[T]`` mixture the improvements are measured against.

    Returns
    -------
    dict
        ``si-snr``, ``si-snri``, ``sdr`` and ``sdri`` in dB.

    Example
    -------
    >>> t, n = torch.randn(4000), torch.randn(4000)
    >>> m = utterance_metrics(t + 0.1 * n, t, t + n)
    >>> sorted(m), m["si-snri"] > 15
    (['sdr', 'sdri', 'si-snr', 'si-snri'], True)
    """
    rows = torch.stack([estimate.float(), mixture.float()])
    snr_est, snr_mix = si_snr(
        rows, target.float()[None].expand_as(rows)
    ).tolist()
    sdr_est, sdr_mix = sdr(estimate, target), sdr(mixture, target)
    return {
        "si-snr": snr_est,
        "si-snri": snr_est - snr_mix,
        "sdr": sdr_est,
        "sdri": sdr_est - sdr_mix,
    }


def perceptual_metrics(estimate, target, mixture, sample_rate):
    """PESQ and STOI of one utterance and their improvements over the mixture, where installed.

    PESQ is narrow-band at 8 kHz and wide-band at 16 kHz (the two rates P.862 defines); at other
    rates or without the ``[metrics]`` extra (``pip install speechbrain-crossmamba[metrics]``)
    the result is ``{}``; where PESQ finds no utterance in the reference, STOI only.

    Arguments
    ---------
    estimate : torch.Tensor
        ``[T]`` estimate.
    target : torch.Tensor
        ``[T]`` reference.
    mixture : torch.Tensor
        ``[T]`` mixture the improvements are measured against.
    sample_rate : int
        Sampling rate of the signals.

    Returns
    -------
    dict
        ``pesq``, ``pesqi``, ``stoi`` and ``stoii``, or a subset (see above).

    Example
    -------
    >>> n, g = torch.arange(16000), torch.Generator().manual_seed(0)
    >>> t = torch.sin(n * 0.15) * torch.sin(n * 0.002).clamp(
    ...     min=0
    ... )  # a 190 Hz tone in bursts
    >>> noisy = lambda level: t + level * torch.randn(16000, generator=g)  # noqa: E731
    >>> m = perceptual_metrics(noisy(0.01), t, noisy(1.0), 8000)
    >>> sorted(m), m["stoii"] > 0
    (['pesq', 'pesqi', 'stoi', 'stoii'], True)
    """
    try:
        from pesq import PesqError, pesq
        from pystoi import stoi
    except ImportError:
        return {}
    if sample_rate not in (8000, 16000):
        return {}
    ref, est, mix = (
        np.asarray(torch.as_tensor(x).detach().float().cpu(), dtype=np.float64)
        for x in (target, estimate, mixture)
    )
    s_est, s_mix = (
        float(stoi(ref, est, sample_rate)),
        float(stoi(ref, mix, sample_rate)),
    )
    out = {"stoi": s_est, "stoii": s_est - s_mix}
    mode = "nb" if sample_rate == 8000 else "wb"
    try:
        p_est, p_mix = (
            float(pesq(sample_rate, ref, est, mode)),
            float(pesq(sample_rate, ref, mix, mode)),
        )
    except (
        PesqError
    ):  # e.g. no utterance found in a silent or too short reference: STOI only
        return out
    return {"pesq": p_est, "pesqi": p_est - p_mix, **out}


def speaker_eer(embed, utterances_csv):
    """Speaker-verification EER of an embedding over every pair of a split's utterances.

    Scores are cosine similarities; a pair is a target trial when both utterances share
    ``spk_id``. The EER is SpeechBrain's (``speechbrain.utils.metric_stats.EER``). With the
    unseen test speakers of SynthSpeakers, this says whether a clue encoder knows speakers.

    Arguments
    ---------
    embed : callable
        ``embed(waveform [1, T]) -> embedding [1, C]`` (e.g. ``extractor.encode_clue``).
    utterances_csv : str
        ``ID,duration,wav,spk_id`` (``test_utts`` of ``prepare_synth_speakers``).

    Returns
    -------
    float
        The EER, in [0, 1].

    Example
    -------
    >>> import tempfile, soundfile
    >>> d = tempfile.mkdtemp()
    >>> lines = ["ID,duration,wav,spk_id"]
    >>> for i in range(6):
    ...     path = os.path.join(d, f"u{i}.wav")
    ...     tone = np.sin(
    ...         np.arange(4000) * (0.1 if i % 2 else 0.3)
    ...     ) + 0.01 * np.random.randn(4000)
    ...     soundfile.write(path, tone, 8000)
    ...     lines.append(f"u{i},0.5,{path},s{i % 2}")
    >>> _ = open(os.path.join(d, "utts.csv"), "w").write(
    ...     "\\n".join(lines) + "\\n"
    ... )
    >>> spectrum = lambda wav: torch.fft.rfft(wav).abs()[:, :200]
    >>> speaker_eer(spectrum, os.path.join(d, "utts.csv"))
    0.0
    """
    from speechbrain.dataio.dataio import read_audio
    from speechbrain.utils.metric_stats import EER

    with open(utterances_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with torch.no_grad():
        emb = torch.cat(
            [
                embed(read_audio(r["wav"]).float()[None]).reshape(1, -1)
                for r in rows
            ]
        )
    emb = torch.nn.functional.normalize(emb.float(), dim=1)
    scores = emb @ emb.T
    speakers = [r["spk_id"] for r in rows]
    same = torch.tensor([[a == b for b in speakers] for a in speakers])
    upper = torch.triu(torch.ones_like(same), diagonal=1)
    return float(EER(scores[same & upper], scores[~same & upper])[0])
