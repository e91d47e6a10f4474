"""Random crops of training utterances with their speaker index, for speaker pretraining.

Authors
 * speechbrain-crossmamba contributors
"""

import numpy as np
import torch

from speechbrain.dataio.dataio import read_audio
from speechbrain_crossmamba.dataio.mixing import crop_or_pad, read_utterance_csv


class SpeakerCropDataset(torch.utils.data.Dataset):
    """Items ``{id, sig, spk}``: a random ``crop_seconds`` window of a training utterance
    (the whole utterance when shorter) and the index of its speaker, drawn afresh each epoch.

    The speaker-ID training set of ``train_speaker.py`` (``AdditiveAngularMargin`` over the
    training speakers). Items are reproducible: item ``i`` of epoch ``e`` depends only on
    ``(seed, e, i)``.

    Arguments
    ---------
    utterances_csv : str
        ``ID,duration,wav,spk_id`` (``train_utts`` of ``prepare_synth_speakers``).
    crop_seconds : float
        Length of every crop.
    sample_rate : int
        Sample rate of the files.
    epoch_size : int, optional
        Items per epoch (default: one per utterance).
    seed : int
        Seed of the crops.
    exclude : iterable of str
        Utterance IDs to leave out (e.g. bad files).

    Example
    -------
    >>> import tempfile, os, soundfile
    >>> d = tempfile.mkdtemp()
    >>> lines = ["ID,duration,wav,spk_id"]
    >>> for i in range(4):
    ...     soundfile.write(
    ...         os.path.join(d, f"u{i}.wav"),
    ...         np.random.randn(4000 - 1000 * i) * 0.1,
    ...         8000,
    ...     )
    ...     lines.append(f"u{i},0.5,{os.path.join(d, f'u{i}.wav')},s{i % 2}")
    >>> _ = open(os.path.join(d, "u.csv"), "w").write("\\n".join(lines) + "\\n")
    >>> data = SpeakerCropDataset(
    ...     os.path.join(d, "u.csv"), crop_seconds=0.25, epoch_size=6
    ... )
    >>> (
    ...     len(data),
    ...     data.speakers,
    ...     sorted({len(data[i]["sig"]) for i in range(6)}) <= [1000, 2000],
    ... )
    (6, ['s0', 's1'], True)
    """

    def __init__(
        self,
        utterances_csv,
        crop_seconds=2.0,
        sample_rate=8000,
        epoch_size=None,
        seed=1234,
        exclude=(),
    ):
        rows = read_utterance_csv(utterances_csv, exclude)
        self.speakers = sorted({row["spk_id"] for row in rows})
        index = {spk: i for i, spk in enumerate(self.speakers)}
        self.ids = [row["ID"] for row in rows]
        self.labels = [index[row["spk_id"]] for row in rows]
        self.audio = [read_audio(row["wav"]).float() for row in rows]
        self.length = int(round(crop_seconds * sample_rate))
        if self.length <= 0:
            raise ValueError(f"crop_seconds must be > 0, got {crop_seconds}")
        self.epoch_size, self.seed, self.epoch = epoch_size, seed, 0

    def set_epoch(self, epoch):
        """Selects the epoch whose crops are drawn (call before each epoch).

        Arguments
        ---------
        epoch : int
            The epoch (SpeechBrain's counter starts at 1).
        """
        self.epoch = int(epoch)

    def __len__(self):
        return self.epoch_size if self.epoch_size is not None else len(self.ids)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(
                f"index {index} out of range for {len(self)} items"
            )
        rng = np.random.default_rng((self.seed, self.epoch, index))
        u = (
            index % len(self.ids)
            if self.epoch_size is None
            else int(rng.integers(len(self.ids)))
        )
        sig = self.audio[u]
        if (
            len(sig) > self.length
        ):  # shorter ones stay whole: PaddedBatch pads them, with lengths
            sig = crop_or_pad(sig, self.length, rng)
        return {
            "id": f"{self.ids[u]}_{self.epoch}_{index}",
            "sig": sig,
            "spk": torch.tensor([self.labels[u]]),
        }
