"""Training sets of target-speaker extraction on real corpora: random enrollments per epoch.

The Libri2Mix protocol of SpeakerBeam and WeSep: a training example is a (mixture, target)
row of a prepared mixture CSV, and its enrollment is drawn afresh each epoch among the
**other** utterances of the target speaker, cropped at random to ``enroll_seconds``; shorter
utterances are never used as enrollments. With ``dynamic_mixing`` the mixtures themselves are
made afresh each epoch from the training utterances (and recorded noise, when given)
by :class:`~speechbrain_crossmamba.dataio.mixing.DynamicMixDataset`.

The inputs are the CSVs the recipes' ``prepare_*`` functions write:

- a mixture CSV ``ID,duration,mix_wav,target_wav,spk_id,target_utt[,...]``;
- an utterance CSV ``ID,duration,wav,spk_id`` (ID = utterance ID): the enrollment pool;
- optionally a noise CSV ``ID,duration,wav`` (dynamic mixing only).

Authors
 * speechbrain-crossmamba contributors
"""

import csv
import logging

import numpy as np
import torch

from speechbrain.dataio.dataio import read_audio
from speechbrain_crossmamba.dataio.mixing import (
    DynamicMixDataset,
    crop_or_pad,
    read_utterance_csv,
)

logger = logging.getLogger(__name__)

MIXTURE_COLUMNS = ("ID", "mix_wav", "target_wav", "spk_id", "target_utt")


def _read_mixture_rows(path, exclude):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [
            c for c in MIXTURE_COLUMNS if c not in (reader.fieldnames or [])
        ]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        return [row for row in reader if row["ID"] not in exclude]


class RandomEnrollmentDataset(torch.utils.data.Dataset):
    """Prepared (mixture, target) rows, each with a fresh random enrollment every epoch.

    Item ``index`` of epoch ``e`` depends only on ``(seed, e, index)``, in any worker and
    after resuming. Its enrollment is a random ``enroll_seconds`` crop of a random utterance
    of the target speaker (``spk_id``) other than the target utterance (``target_utt``), among
    the utterances at least ``enroll_seconds`` long; rows without such an utterance are left
    out (logged). With ``segment_seconds``, mixture and target are cropped together at a random
    offset when longer (shorter ones are kept whole: the batch pads them and the loss masks
    the padding).

    Arguments
    ---------
    mixtures_csv : str
        The mixture CSV (columns ``ID,mix_wav,target_wav,spk_id,target_utt``; more are ignored).
    utterances_csv : str
        The enrollment pool: ``ID,duration,wav,spk_id``.
    enroll_seconds : float
        Length of every enrollment.
    segment_seconds : float, optional
        Longest training segment; whole mixtures when None.
    sample_rate : int
        Sample rate of the files.
    seed : int
        Base seed.
    exclude : iterable of str
        Row and utterance IDs to leave out (bad files found by ``check_csv``).

    Example
    -------
    >>> import os, tempfile, soundfile
    >>> d = tempfile.mkdtemp()
    >>> def wav(name, seconds):
    ...     path = os.path.join(d, name + ".wav")
    ...     soundfile.write(
    ...         path,
    ...         np.random.default_rng(len(name)).uniform(
    ...             -0.5, 0.5, int(8000 * seconds)
    ...         ),
    ...         8000,
    ...     )
    ...     return path
    >>> utts = {"a1": 2.0, "a2": 1.5, "a3": 0.5, "b1": 2.0}
    >>> pool = ["ID,duration,wav,spk_id"] + [
    ...     f"{u},{s},{wav(u, s)},{u[0]}" for u, s in utts.items()
    ... ]
    >>> _ = open(os.path.join(d, "utts.csv"), "w").write(
    ...     "\\n".join(pool) + "\\n"
    ... )
    >>> mix = wav("mix", 2.0)
    >>> rows = [
    ...     "ID,duration,mix_wav,target_wav,spk_id,target_utt",
    ...     f"m_s1,2.0,{mix},{wav('a1', 2.0)},a,a1",
    ...     f"m_s2,2.0,{mix},{wav('b1', 2.0)},b,b1",
    ... ]
    >>> _ = open(os.path.join(d, "mix.csv"), "w").write(
    ...     "\\n".join(rows) + "\\n"
    ... )
    >>> ds = RandomEnrollmentDataset(
    ...     os.path.join(d, "mix.csv"),
    ...     os.path.join(d, "utts.csv"),
    ...     enroll_seconds=1.0,
    ...     segment_seconds=1.5,
    ... )
    >>> len(ds)  # speaker b has no other utterance: its row is left out
    1
    >>> item = ds[0]
    >>> (
    ...     item["id"],
    ...     item["mix_sig"].shape,
    ...     item["enroll_sig"].shape,
    ... )  # a2 is the only enrollment
    ('m_s1', torch.Size([12000]), torch.Size([8000]))
    """

    def __init__(
        self,
        mixtures_csv,
        utterances_csv,
        enroll_seconds=3.0,
        segment_seconds=None,
        sample_rate=8000,
        seed=1234,
        exclude=(),
    ):
        exclude = set(exclude)
        self.enroll = round(enroll_seconds * sample_rate)
        self.segment = (
            None
            if segment_seconds is None
            else round(segment_seconds * sample_rate)
        )
        if self.enroll < 1 or (self.segment is not None and self.segment < 1):
            raise ValueError(
                "enroll_seconds and segment_seconds must be positive"
            )
        pool = {}
        for utt in read_utterance_csv(utterances_csv, exclude):
            if float(utt["duration"]) * sample_rate >= self.enroll:
                pool.setdefault(utt["spk_id"], []).append(
                    (utt["ID"], utt["wav"])
                )
        rows = _read_mixture_rows(mixtures_csv, exclude)
        self.rows, self.candidates = [], []
        for row in rows:
            others = [
                path
                for utt, path in pool.get(row["spk_id"], [])
                if utt != row["target_utt"]
            ]
            if others:
                self.rows.append(row)
                self.candidates.append(others)
        dropped = len(rows) - len(self.rows)
        if dropped:
            logger.warning(
                "%s: %d row(s) left out: their speaker has no other utterance of %.1f s or more",
                mixtures_csv,
                dropped,
                enroll_seconds,
            )
        if not self.rows:
            raise ValueError(
                f"{mixtures_csv}: no row has another utterance of its speaker of {enroll_seconds} s or more"
            )
        speakers = sorted({row["spk_id"] for row in self.rows})
        self.speaker_index = {spk: k for k, spk in enumerate(speakers)}
        self.sample_rate = sample_rate
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch):
        """Selects the epoch whose enrollments and crops are drawn (call before each epoch).

        Arguments
        ---------
        epoch : int
            The epoch (SpeechBrain's counter starts at 1).
        """
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(
                f"index {index} out of range for {len(self)} items"
            )
        rng = np.random.default_rng((self.seed, self.epoch, index))
        row = self.rows[index]
        mix, target = read_audio(row["mix_wav"]), read_audio(row["target_wav"])
        if self.segment is not None and len(mix) > self.segment:
            start = int(rng.integers(0, len(mix) - self.segment + 1))
            mix, target = (
                mix[start : start + self.segment],
                target[start : start + self.segment],
            )
        others = self.candidates[index]
        enroll = crop_or_pad(
            read_audio(others[int(rng.integers(len(others)))]), self.enroll, rng
        )
        return {
            "id": row["ID"],
            "mix_sig": mix.float(),
            "target_sig": target.float(),
            "enroll_sig": enroll.float().clone(),
            "spk_index": self.speaker_index[row["spk_id"]],
        }


def enrollment_train_set(
    mixtures_csv,
    utterances_csv,
    noise_csv=None,
    dynamic_mixing=False,
    enroll_seconds=3.0,
    segment_seconds=4.0,
    snr_range=(-5.0, 5.0),
    noise_db=None,
    sample_rate=8000,
    seed=1234,
    exclude=(),
    epoch_size=None,
):
    """The training set of a real-corpus recipe: prepared mixtures, or dynamic mixing.

    One entry point for the YAML (``dynamic_mixing: True`` switches):

    - ``dynamic_mixing=False``: :class:`RandomEnrollmentDataset` over ``mixtures_csv``;
    - ``dynamic_mixing=True``: :class:`~speechbrain_crossmamba.dataio.mixing.DynamicMixDataset`
      over ``utterances_csv``: new mixtures every epoch at ``snr_range``, with recorded noise
      from ``noise_csv`` (or none when None) at ``noise_db`` relative to the mixture, and
      enrollments of exactly ``enroll_seconds`` cut from utterances at least that long.

    In both, the enrollment is another utterance of the target speaker, drawn every epoch.

    Arguments
    ---------
    mixtures_csv, utterances_csv : str
        The prepared mixtures and the utterances (see the module docstring).
    noise_csv : str, optional
        Recorded noise ``ID,duration,wav`` (dynamic mixing only).
    dynamic_mixing : bool
        Mix afresh every epoch instead of using ``mixtures_csv``.
    enroll_seconds : float
        Length of every enrollment.
    segment_seconds : float, optional
        Training segment length (required with dynamic mixing); whole mixtures when None.
    snr_range, noise_db, epoch_size
        Those of ``DynamicMixDataset`` (dynamic mixing only).
    sample_rate : int
        Sample rate of the files.
    seed : int
        Base seed.
    exclude : iterable of str
        Row and utterance IDs to leave out (bad files).

    Returns
    -------
    RandomEnrollmentDataset or DynamicMixDataset
        The training set.

    Example
    -------
    >>> enrollment_train_set("m.csv", "u.csv", segment_seconds=0)
    Traceback (most recent call last):
    ...
    ValueError: segment_seconds must be positive or None
    """
    if segment_seconds is not None and segment_seconds <= 0:
        raise ValueError("segment_seconds must be positive or None")
    if not dynamic_mixing:
        return RandomEnrollmentDataset(
            mixtures_csv,
            utterances_csv,
            enroll_seconds,
            segment_seconds,
            sample_rate,
            seed,
            exclude,
        )
    if segment_seconds is None:
        raise ValueError("dynamic mixing needs segment_seconds")
    return DynamicMixDataset(
        utterances_csv,
        segment_seconds=segment_seconds,
        enroll_seconds=enroll_seconds,
        snr_range=snr_range,
        noise_db=noise_db if noise_csv else None,
        sample_rate=sample_rate,
        epoch_size=epoch_size,
        seed=seed,
        exclude=exclude,
        preload=False,
        noise_csv=noise_csv,
        drop_short_enrollments=True,
    )
