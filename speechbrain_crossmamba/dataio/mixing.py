"""Mixing two speakers at a given SNR, and the dynamic-mixing training set.

:func:`mix_at_snr` is shared by the fixed valid/test mixture lists of
:mod:`speechbrain_crossmamba.dataio.synth_speakers` and by :class:`DynamicMixDataset`, so that
both follow one convention: the SNR is the target's power relative to the interferer's, an
optional noise sits ``noise_db`` dB relative to the two-speaker mixture, and when the mixture
would clip, mixture and target are scaled down together (the target stays the exact
reference of the mixture). The signal functions (:func:`mix_at_snr`, :func:`colored_noise`,
:func:`crop_or_pad`) and :func:`read_utterance_csv` live in :mod:`.mix_signals` and are
re-exported here; this module holds :class:`DynamicMixDataset`.

Authors
 * speechbrain-crossmamba contributors
"""

import numpy as np
import torch

from speechbrain_crossmamba.dataio.augment import (
    babble,
    reverberate,
    speed_perturb,
    synthetic_rir,
)
from speechbrain_crossmamba.dataio.mix_signals import (  # noqa: F401
    colored_noise,
    crop_or_pad,
    mix_at_snr,
    read_utterance_csv,
)
from speechbrain_crossmamba.dataio.tse_data import check_audio_file


class DynamicMixDataset(torch.utils.data.Dataset):
    """Two-speaker mixtures drawn afresh every epoch from an utterance CSV.

    Item ``index`` of epoch ``e`` depends only on ``(seed, e, index)``: its random draws come
    from ``numpy.random.default_rng((seed, e, index))`` and its target from a per-epoch
    permutation, so it is the same in any worker and after resuming. The targets of an epoch
    run through a permutation of all usable utterances (each once per epoch when
    ``epoch_size`` is None); the interferer is an utterance of another speaker, the enrollment
    another utterance of the target speaker. Interferers are drawn among the other speaker's
    utterances at least one segment long when there are any. Items also carry ``spk_index``,
    the target speaker's index in the sorted speaker IDs (for an auxiliary speaker classifier
    on the enrollment embedding, as in SpEx+).

    Arguments
    ---------
    utterances_csv : str
        CSV with columns ``ID,duration,wav,spk_id`` (e.g. ``train_utts`` of
        :func:`~speechbrain_crossmamba.dataio.synth_speakers.prepare_synth_speakers`).
    segment_seconds : float
        Length of mixture and target (cropped, or zero-padded at a random offset).
    enroll_seconds : float
        Longest enrollment; a longer utterance is cropped at random.
    snr_range : (float, float)
        Uniform range of the target-to-interferer ratio in dB.
    noise_db : (float, float), optional
        Uniform range of the level of white or pink noise relative to the mixture, in dB
        (e.g. ``(-30, -20)``); no noise when None.
    sample_rate : int
        Sample rate of the WAVs (checked on the first one).
    epoch_size : int, optional
        Items per epoch; the number of usable utterances when None.
    seed : int
        Base seed.
    exclude : iterable of str
        Utterance IDs to skip (bad files).
    preload : bool
        Read all audio once into one tensor (shared copy-on-write by forked workers);
        otherwise read each file when used, with :func:`speechbrain.dataio.dataio.read_audio`.
    noise_csv : str, optional
        CSV ``ID,duration,wav`` of recorded noise (e.g. WHAM! in Libri2Mix): the noise is a
        random crop of one of them, at ``noise_db``, instead of white or pink noise.
    drop_short_enrollments : bool
        Use only utterances at least ``enroll_seconds`` long as enrollments (all exactly that
        long); targets without one are left out. By default shorter ones are used whole.
    speed_range : (float, float), optional
        Speed perturbation (:mod:`~speechbrain_crossmamba.dataio.augment`): each speaker of an
        item plays at a speed drawn uniformly in this range, the target speaker's target and
        enrollment alike (a new voice, as Kaldi's 0.9-1.1). Off when None.
    reverb_prob : float
        Probability that an item's mixture is reverberant: target and interferer each get a
        synthetic room impulse response of one RT60 drawn in ``rt60_range``; the reference is
        the reverberant target (extraction, not dereverberation). The enrollment is
        reverberated independently with the same probability.
    rt60_range : (float, float)
        Uniform range of the RT60 in seconds.
    noise_colors : sequence of str
        The noise kinds drawn for ``noise_db`` without ``noise_csv``: ``white``, ``pink``,
        ``brown`` and ``babble`` (3-5 utterances of speakers other than the target).

    Example
    -------
    >>> import tempfile, os, soundfile
    >>> d = tempfile.mkdtemp()
    >>> lines = ["ID,duration,wav,spk_id"]
    >>> for i in range(4):
    ...     path = os.path.join(d, f"u{i}.wav")
    ...     soundfile.write(
    ...         path, np.random.default_rng(i).uniform(-0.5, 0.5, 8000), 8000
    ...     )
    ...     lines.append(f"u{i},1.0,{path},s{i % 2}")
    >>> _ = open(os.path.join(d, "utts.csv"), "w").write(
    ...     "\\n".join(lines) + "\\n"
    ... )
    >>> ds = DynamicMixDataset(
    ...     os.path.join(d, "utts.csv"),
    ...     segment_seconds=0.5,
    ...     enroll_seconds=0.25,
    ... )
    >>> item = ds[0]
    >>> (
    ...     len(ds),
    ...     item["mix_sig"].shape,
    ...     item["target_sig"].shape,
    ...     item["enroll_sig"].shape,
    ... )
    (4, torch.Size([4000]), torch.Size([4000]), torch.Size([2000]))
    >>> bool(torch.equal(ds[1]["mix_sig"], ds[1]["mix_sig"]))
    True
    """

    def __init__(
        self,
        utterances_csv,
        segment_seconds=3.0,
        enroll_seconds=3.0,
        snr_range=(-5.0, 5.0),
        noise_db=None,
        sample_rate=8000,
        epoch_size=None,
        seed=1234,
        exclude=(),
        preload=True,
        noise_csv=None,
        drop_short_enrollments=False,
        speed_range=None,
        reverb_prob=0.0,
        rt60_range=(0.2, 0.6),
        noise_colors=("white", "pink"),
    ):
        rows = read_utterance_csv(utterances_csv, exclude)
        self.ids = [r["ID"] for r in rows]
        self.paths = [r["wav"] for r in rows]
        self.speakers = [r["spk_id"] for r in rows]
        self.lengths = [float(r["duration"]) * sample_rate for r in rows]
        self.by_speaker = {}
        for i, spk in enumerate(self.speakers):
            self.by_speaker.setdefault(spk, []).append(i)
        self.speaker_index = {
            spk: k for k, spk in enumerate(sorted(self.by_speaker))
        }
        self.segment = round(segment_seconds * sample_rate)
        self.enroll = round(enroll_seconds * sample_rate)
        if self.segment < 1 or self.enroll < 1:
            raise ValueError(
                "segment_seconds and enroll_seconds must be positive"
            )
        self.drop_short = drop_short_enrollments
        self.targets = [i for i in range(len(rows)) if self._enrollments(i)]
        if len(self.by_speaker) < 2 or not self.targets:
            raise ValueError(
                f"{utterances_csv}: dynamic mixing needs 2+ speakers and one with 2+ utterances"
                + (
                    f" (enrollments of {enroll_seconds} s or more)"
                    if drop_short_enrollments
                    else ""
                )
            )
        self.noise_paths = (
            [r["wav"] for r in read_utterance_csv(noise_csv, exclude, ("wav",))]
            if noise_csv
            else []
        )
        self.snr_range = tuple(snr_range)
        self.noise_db = None if noise_db is None else tuple(noise_db)
        self.sample_rate = sample_rate
        self.speed_range = None if speed_range is None else tuple(speed_range)
        self.reverb_prob = float(reverb_prob)
        self.rt60_range = tuple(rt60_range)
        self.noise_colors = tuple(noise_colors)
        unknown = set(self.noise_colors) - {"white", "pink", "brown", "babble"}
        if unknown or not self.noise_colors:
            raise ValueError(
                f"noise_colors must be among white, pink, brown, babble; got {list(noise_colors)}"
            )
        if (
            self.speed_range is not None
            and not 0 < self.speed_range[0] <= self.speed_range[1]
        ):
            raise ValueError(
                f"speed_range must be (low, high) with 0 < low <= high; got {speed_range}"
            )
        if not 0.0 <= self.reverb_prob <= 1.0:
            raise ValueError(
                f"reverb_prob must be in [0, 1]; got {reverb_prob}"
            )
        self.epoch_size = epoch_size
        self.seed = seed
        self.epoch = 0
        self._perm = {}
        problem = check_audio_file(
            self.paths[0], sample_rate
        )  # tse_data.check_csv checks all
        if problem:
            raise ValueError(f"{utterances_csv}: {problem}: {self.paths[0]}")
        self._audio = self._offsets = None
        if preload:
            signals = [self._read(p) for p in self.paths]
            self._offsets = np.cumsum([0] + [len(s) for s in signals])
            self._audio = torch.cat(signals)

    @staticmethod
    def _read(path):
        from speechbrain.dataio.dataio import read_audio

        sig = read_audio(path)
        if sig.dim() != 1:
            raise ValueError(f"{path} is not mono")
        return sig.float()

    def _load(self, i):
        if self._audio is None:
            return self._read(self.paths[i])
        return self._audio[int(self._offsets[i]) : int(self._offsets[i + 1])]

    def _enrollments(self, t):
        """The utterances that may serve as enrollment for target utterance ``t``."""
        same = self.by_speaker[self.speakers[t]]
        return [
            e
            for e in same
            if e != t
            and (not self.drop_short or self.lengths[e] >= self.enroll)
        ]

    def set_epoch(self, epoch):
        """Selects the epoch whose mixtures are drawn (call before each epoch).

        Arguments
        ---------
        epoch : int
            The epoch (SpeechBrain's counter starts at 1).
        """
        self.epoch = int(epoch)

    def __len__(self):
        return (
            self.epoch_size
            if self.epoch_size is not None
            else len(self.targets)
        )

    def _target(self, index):
        block, pos = divmod(index, len(self.targets))
        key = (self.epoch, block)
        if key not in self._perm:
            if len(self._perm) > 8:
                self._perm.clear()
            # 4-entry key with a non-zero tail: never equal to an item's (seed, epoch, index)
            rng = np.random.default_rng((self.seed, self.epoch, block, 0x5EED))
            self._perm[key] = rng.permutation(len(self.targets))
        return self.targets[self._perm[key][pos]]

    def _reverberate(self, rng, target, interferer, enroll):
        """Target and interferer in one room (with probability ``reverb_prob``), the
        enrollment in another (independently, with the same probability)."""
        if rng.random() < self.reverb_prob:
            rt60 = float(rng.uniform(*self.rt60_range))
            target = reverberate(
                target, synthetic_rir(rng, rt60, self.sample_rate)
            )
            interferer = reverberate(
                interferer, synthetic_rir(rng, rt60, self.sample_rate)
            )
        if rng.random() < self.reverb_prob:
            rt60 = float(rng.uniform(*self.rt60_range))
            enroll = reverberate(
                enroll, synthetic_rir(rng, rt60, self.sample_rate)
            )
        return target, interferer, enroll

    def _noise(self, rng, target_speaker):
        """Unit-power noise of a kind drawn from ``noise_colors``."""
        color = self.noise_colors[int(rng.integers(len(self.noise_colors)))]
        if color != "babble":
            return torch.from_numpy(colored_noise(self.segment, rng, color))
        others = [j for j, s in enumerate(self.speakers) if s != target_speaker]
        talkers = rng.choice(
            len(others), size=int(rng.integers(3, 6)), replace=True
        )
        return babble(
            [self._load(others[k]) for k in talkers],
            self.segment,
            rng,
            crop_or_pad,
        )

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(
                f"index {index} out of range for {len(self)} items"
            )
        rng = np.random.default_rng((self.seed, self.epoch, index))
        t = self._target(index)
        spk = self.speakers[t]
        others = [s for s in self.by_speaker if s != spk]
        interferers = self.by_speaker[others[int(rng.integers(len(others)))]]
        long_enough = [
            j for j in interferers if self.lengths[j] >= self.segment
        ]
        interferers = (
            long_enough or interferers
        )  # an interferer covering the whole segment
        i = interferers[int(rng.integers(len(interferers)))]
        enrolls = self._enrollments(t)
        e = enrolls[int(rng.integers(len(enrolls)))]
        snr = float(rng.uniform(*self.snr_range))
        target, interferer, enroll = self._load(t), self._load(i), self._load(e)
        if (
            self.speed_range is not None
        ):  # one speed per speaker: target and enrollment alike
            s_target, s_interferer = rng.uniform(*self.speed_range, size=2)
            target, enroll = (
                speed_perturb(target, s_target),
                speed_perturb(enroll, s_target),
            )
            interferer = speed_perturb(interferer, s_interferer)
        target = crop_or_pad(target, self.segment, rng)
        interferer = crop_or_pad(interferer, self.segment, rng)
        if len(enroll) > self.enroll:
            full, enroll = enroll, crop_or_pad(enroll, self.enroll, rng)
            if (
                not enroll.abs().any()
            ):  # a silent crop has no clue: centre it on the peak
                peak = int(full.abs().argmax()) - self.enroll // 2
                start = min(max(0, peak), len(full) - self.enroll)
                enroll = full[start : start + self.enroll]
        if self.reverb_prob > 0:
            target, interferer, enroll = self._reverberate(
                rng, target, interferer, enroll
            )
        noise = level = None
        if self.noise_db is not None:
            level = float(rng.uniform(*self.noise_db))
            if self.noise_paths:
                path = self.noise_paths[
                    int(rng.integers(len(self.noise_paths)))
                ]
                noise = crop_or_pad(self._read(path), self.segment, rng)
            else:
                noise = self._noise(rng, spk)
        mix, target = mix_at_snr(
            target, interferer, snr, noise=noise, noise_db=level
        )
        return {
            "id": f"e{self.epoch}_{index}_{self.ids[t]}_{self.ids[i]}",
            "mix_sig": mix,
            "target_sig": target.clone(),
            "enroll_sig": enroll.clone(),
            "spk_index": self.speaker_index[
                spk
            ],  # target speaker, for an auxiliary classifier
        }
