"""Reports of target extraction: the test stage's per-utterance records, the results CSV,
example audio and spectrograms.

The metrics (SI-SNR(i), SDR(i), PESQ/STOI, the speaker EER) are in :mod:`.metrics` and
re-exported here (``speechbrain_crossmamba.evaluation.si_snr`` and the others keep their
paths).

Authors
 * speechbrain-crossmamba contributors
"""

import csv
import os

import numpy as np
import torch

from speechbrain.utils.distributed import if_main_process
from speechbrain_crossmamba.metrics import (  # noqa: F401
    EPS,
    perceptual_metrics,
    sdr,
    si_snr,
    speaker_eer,
    utterance_metrics,
)


def write_results(path, rows, keys=("si-snr", "si-snri", "sdr", "sdri")):
    """Writes one CSV row per mixture and a final ``avg`` row; returns the averages.

    A key that some rows lack (e.g. PESQ where it found no utterance) is left empty in them and
    averaged over the rows that have it.

    Arguments
    ---------
    path : str
        The CSV file to write.
    rows : list of dict
        One dict per mixture: ``ID`` and the metrics.
    keys : sequence of str
        The metric columns.

    Returns
    -------
    dict
        ``key -> mean`` over the rows.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "r.csv")
    >>> write_results(
    ...     path,
    ...     [{"ID": "a", "si-snr": 1.0}, {"ID": "b", "si-snr": 3.0}],
    ...     keys=["si-snr"],
    ... )
    {'si-snr': 2.0}
    >>> open(path).read().splitlines()[-1]
    'avg,2.0'
    """
    means = {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(
            f, fieldnames=["ID", *keys], restval="", extrasaction="ignore"
        )
        writer.writeheader()
        writer.writerows(rows)
        writer.writerow({"ID": "avg", **means})
    return means


def write_wav(path, signal, sample_rate):
    """Writes a [T] signal as a WAV, scaled down only if it would clip (levels are kept).

    Arguments
    ---------
    path : str
        The WAV file to write.
    signal : torch.Tensor
        ``[T]`` signal.
    sample_rate : int
        Sampling rate of the signal.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.wav")
    >>> write_wav(path, torch.tensor([0.5, -2.0, 1.0]), 8000)
    >>> from speechbrain.dataio.dataio import read_audio
    >>> read_audio(path).tolist()
    [0.25, -1.0, 0.5]
    """
    from speechbrain.dataio.dataio import write_audio

    signal = signal.detach().float().cpu()
    write_audio(path, signal / signal.abs().max().clamp(min=1.0), sample_rate)


def save_example(folder, name, signals, sample_rate, title=""):
    """Writes the example's WAVs (``<name>_<key>.wav``) and a before/after spectrogram PNG.

    Arguments
    ---------
    folder : str
        Output folder (created).
    name : str
        Example name (the mixture ID).
    signals : dict
        ``key -> [T]`` tensors, e.g. ``mixture``, ``enrollment``, ``estimate``, ``target``.
        The PNG shows ``mixture``, ``estimate`` and ``target`` when present.
    sample_rate : int
        Sampling rate of the signals.
    title : str
        Shown above the spectrograms (e.g. the clue).

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> sigs = {
    ...     "mixture": torch.randn(8000),
    ...     "estimate": torch.randn(8000),
    ...     "target": torch.randn(8000),
    ... }
    >>> save_example(folder, "ex", sigs, 8000)
    >>> sorted(os.listdir(folder))
    ['ex.png', 'ex_estimate.wav', 'ex_mixture.wav', 'ex_target.wav']
    """
    os.makedirs(folder, exist_ok=True)
    for key, sig in signals.items():
        write_wav(os.path.join(folder, f"{name}_{key}.wav"), sig, sample_rate)
    shown = [k for k in ("mixture", "estimate", "target") if k in signals]
    plot_spectrograms(
        os.path.join(folder, f"{name}.png"),
        {k: signals[k] for k in shown},
        sample_rate,
        title,
    )


def plot_spectrograms(path, signals, sample_rate, title=""):
    """Writes a PNG with one spectrogram per signal, stacked (matplotlib, Agg).

    Arguments
    ---------
    path : str
        The PNG file to write.
    signals : dict
        ``name -> [T]`` tensors, one panel each, top to bottom.
    sample_rate : int
        Sampling rate of the signals.
    title : str
        Shown above the first panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(signals), 1, figsize=(8, 2.2 * len(signals)), sharex=True
    )
    axes = np.atleast_1d(axes)
    window = torch.hann_window(256)
    for ax, (key, sig) in zip(axes, signals.items()):
        spec = torch.stft(
            sig.detach().float().cpu(),
            256,
            64,
            window=window,
            return_complex=True,
        )
        db = 20 * torch.log10(spec.abs() + 1e-5)
        seconds = sig.shape[-1] / sample_rate
        ax.imshow(
            db.numpy(),
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=float(db.max()) - 80,
            extent=[0, seconds, 0, sample_rate / 2000],
        )
        ax.set_ylabel(f"{key}\nkHz")
    axes[-1].set_xlabel("seconds")
    if title:
        axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


class TestRecords:
    """``TSEBrain`` mixin: the test stage's per-utterance rows (``test_rows``) and examples.

    Every test utterance gets a row of :func:`utterance_metrics` (and of
    :func:`perceptual_metrics` with an enrollment clue), with ``si-snri-interferer-clue``
    where the batch holds the interferer's enrollment (``interferer_clue_test``); the first
    ``n_examples`` are written by :func:`save_example` to ``<output_folder>/examples``.
    """

    def _record_test(self, predictions, batch):
        target, lens = batch.target_sig
        mix, _ = batch.mix_sig
        clue = getattr(batch, self.hparams.clue_key)
        wrong = []  # the estimate given the interferer's enrollment instead (interferer_clue_test)
        if hasattr(batch, "interf_enroll_sig"):
            other, other_lens = batch.interf_enroll_sig
            with torch.no_grad():
                wrong = self.modules.extractor(
                    mix, other, lengths=lens, clue_lengths=other_lens
                ).float()
        for i, uid in enumerate(batch.id):
            n = int(torch.round(lens[i] * target.shape[1]))
            est = predictions[i, :n].float()
            row = {
                "ID": uid,
                **utterance_metrics(est, target[i, :n], mix[i, :n]),
            }
            if (
                self.hparams.clue_key == "enroll_sig"
            ):  # speech: PESQ and STOI, where installed
                row.update(
                    perceptual_metrics(
                        est, target[i, :n], mix[i, :n], self.hparams.sample_rate
                    )
                )
            if i < len(
                wrong
            ):  # SI-SNRi only: the mixture's SI-SNR is already in the row
                mix_snr = row["si-snr"] - row["si-snri"]
                wrong_snr = si_snr(
                    wrong[i, :n][None], target[i, :n].float()[None]
                ).item()
                row["si-snri-interferer-clue"] = wrong_snr - mix_snr
            self.test_rows.append(row)
            if (
                len(self.test_rows) <= getattr(self.hparams, "n_examples", 0)
                and if_main_process()
            ):
                signals = {
                    "mixture": mix[i, :n],
                    "estimate": est,
                    "target": target[i, :n],
                }
                title = f"{uid}: SI-SNRi {row['si-snri']:.1f} dB"
                if self.hparams.clue_key == "enroll_sig":
                    m = int(torch.round(clue.lengths[i] * clue.data.shape[1]))
                    signals["enrollment"] = clue.data[i, :m]
                else:
                    names = getattr(self.hparams, "classes", None) or range(
                        clue.data.shape[1]
                    )
                    title += ", clue " + " ".join(
                        str(c) for c, on in zip(names, clue.data[i]) if on > 0
                    )
                folder = os.path.join(self.hparams.output_folder, "examples")
                save_example(
                    folder, uid, signals, self.hparams.sample_rate, title
                )
