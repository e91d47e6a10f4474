"""SynthEvents: the offline default corpus for target sound extraction with a class-label clue.

A Waveformer-style task that needs no download. A mixture holds 2 to 4 events of distinct
procedural sound classes (``CLASSES``, built in ``sound_classes``) at random onsets, lengths
(0.5 s to the whole clip) and gains (within 6 dB of each other), over pink or brown
background noise 15 to 30 dB below the events. The clue names the classes to extract: usually
one class present in the mixture, and with probability ``multi_target_prob`` two of them;
such mixtures hold at least three events, so that something is always left to remove.
The target is the sum of the events of those classes.

Everything is drawn from ``numpy.random.default_rng((seed, split_code, epoch, index))``, so a
mixture is bit-exact per (seed, split, epoch, index) and independent of call order or global
RNG state. Training mixtures are made on the fly (``SynthEventsTrainSet``); the valid and
test sets use other split codes, so they never coincide with training mixtures, and are
written to WAV/CSV once by ``prepare_synth_events``.

One mixture is made by :func:`make_mixture` of :mod:`.event_mixtures` (re-exported here, with
``CLASSES`` and :func:`labels_to_multihot`); this module holds the sets built on it.

Authors
 * speechbrain-crossmamba contributors
"""

import csv
import json
import logging
import os
import shutil
import tempfile

import soundfile as sf
import torch

from speechbrain_crossmamba.dataio.event_mixtures import (  # noqa: F401
    BACKGROUND_DB_BELOW,
    CLASSES,
    GAIN_SPREAD_DB,
    MIN_EVENT_SECONDS,
    PEAK_RANGE,
    SPLIT_CODES,
    _check_config,
    _nonneg_int,
    _render_mixture,
    labels_to_multihot,
    make_mixture,
)

logger = logging.getLogger(__name__)

FORMAT_VERSION = (
    2  # bump when the generated audio changes, so prepared sets are rebuilt
)


def _is_complete(folder, config):
    try:
        with open(os.path.join(folder, "manifest.json")) as f:
            found = json.load(f)
    except (OSError, ValueError):
        return False
    csvs_there = all(
        os.path.isfile(os.path.join(folder, f"{s}.csv"))
        for s in ("valid", "test")
    )
    return found == config and csvs_there


def _write_split(tmp, final, split, count, config):
    os.makedirs(os.path.join(tmp, split))
    rows = []
    for index in range(count):
        m = make_mixture(
            config["seed"], index, config["seconds"], config["sample_rate"],
            config["min_events"], config["max_events"], config["multi_target_prob"], split,
        )  # fmt: skip
        uid = f"{split}_{index:05d}"
        paths = []
        for part in ("mix", "target"):
            name = os.path.join(split, f"{uid}_{part}.wav")
            sf.write(
                os.path.join(tmp, name),
                m[part],
                config["sample_rate"],
                subtype="PCM_16",
            )
            paths.append(os.path.join(final, name))
        duration = len(m["mix"]) / config["sample_rate"]
        rows.append([uid, duration, *paths, " ".join(m["labels"])])
    with open(os.path.join(tmp, f"{split}.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "duration", "mix_wav", "target_wav", "labels"])
        writer.writerows(rows)


def prepare_synth_events(
    data_folder,
    seed=1234,
    n_valid_mixtures=100,
    n_test_mixtures=200,
    seconds=4.0,
    sample_rate=8000,
):
    """Writes the SynthEvents valid and test sets as WAV files (16-bit PCM, mono) and CSVs.

    The files go to ``<data_folder>/SynthEvents_seed<seed>/{valid,test}/`` with
    ``valid.csv`` and ``test.csv`` (columns ID, duration, mix_wav, target_wav, labels; absolute
    paths; labels space-separated) and a ``manifest.json`` holding the configuration. A call
    whose configuration matches the manifest does nothing; another configuration rebuilds
    the folder. The set is written in a hidden temporary folder that is renamed into place
    when complete, so an interrupted run never leaves a folder that looks complete (only a
    ``.SynthEvents_seed<seed>.tmp-*`` folder, which may be deleted).

    Arguments
    ---------
    data_folder : str
        Where the corpus folder goes (created if missing).
    seed : int
        Corpus seed.
    n_valid_mixtures, n_test_mixtures : int
        Number of mixtures per split.
    seconds : float
        Clip length.
    sample_rate : int
        Sampling rate in Hz.

    Returns
    -------
    dict
        {"valid": path of valid.csv, "test": path of test.csv}.

    Example
    -------
    >>> import tempfile, shutil
    >>> tmp = tempfile.mkdtemp()
    >>> csvs = prepare_synth_events(
    ...     tmp, n_valid_mixtures=2, n_test_mixtures=1, seconds=1.0
    ... )
    >>> sorted(csvs), open(csvs["test"]).readline().strip()
    (['test', 'valid'], 'ID,duration,mix_wav,target_wav,labels')
    >>> prepare_synth_events(
    ...     tmp, n_valid_mixtures=2, n_test_mixtures=1, seconds=1.0
    ... ) == csvs
    True
    >>> shutil.rmtree(tmp)
    """
    config = {
        "format_version": FORMAT_VERSION,
        "seed": _nonneg_int("seed", seed),
        "n_valid_mixtures": _nonneg_int("n_valid_mixtures", n_valid_mixtures),
        "n_test_mixtures": _nonneg_int("n_test_mixtures", n_test_mixtures),
        "seconds": float(seconds),
        "sample_rate": int(sample_rate),
        "min_events": 2,
        "max_events": 4,
        "multi_target_prob": 0.25,
        "classes": list(CLASSES),
    }
    _check_config(seconds, sample_rate, 2, 4, 0.25)
    data_folder = os.path.abspath(data_folder)
    final = os.path.join(data_folder, f"SynthEvents_seed{config['seed']}")
    csvs = {
        split: os.path.join(final, f"{split}.csv")
        for split in ("valid", "test")
    }
    if _is_complete(final, config):
        logger.info("SynthEvents already prepared in %s; skipping", final)
        return csvs

    os.makedirs(data_folder, exist_ok=True)
    prefix = f".SynthEvents_seed{config['seed']}.tmp-"
    tmp = tempfile.mkdtemp(prefix=prefix, dir=data_folder)
    try:
        _write_split(tmp, final, "valid", config["n_valid_mixtures"], config)
        _write_split(tmp, final, "test", config["n_test_mixtures"], config)
        with open(os.path.join(tmp, "manifest.json"), "w") as f:
            json.dump(config, f, indent=2)
        if os.path.exists(
            final
        ):  # another configuration: move it aside, then replace it
            if _is_complete(final, config):  # a concurrent run finished first
                shutil.rmtree(tmp)
                return csvs
            old = tempfile.mkdtemp(prefix=prefix, dir=data_folder)
            os.rename(final, os.path.join(old, "old"))
            shutil.rmtree(old)
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if _is_complete(
            final, config
        ):  # lost a rename race to a concurrent run
            return csvs
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("SynthEvents written to %s", final)
    return csvs


class SynthEventsTrainSet(torch.utils.data.Dataset):
    """Training mixtures made on the fly, a fresh set per epoch.

    Item ``index`` of epoch ``e`` is ``make_mixture(seed, index, split="train", epoch=e)``.
    Call ``set_epoch`` before each epoch's loader iterator is created (DataLoader workers
    copy the dataset when they start).

    Arguments
    ---------
    seed : int
        Corpus seed.
    epoch_size : int
        Number of mixtures per epoch.
    seconds, sample_rate, min_events, max_events, multi_target_prob
        As in ``make_mixture``.

    Example
    -------
    >>> ds = SynthEventsTrainSet(epoch_size=4, seconds=1.0)
    >>> item = ds[0]
    >>> item["id"], item["mix_sig"].shape, item["label"].shape
    ('train_e0_000000', torch.Size([8000]), torch.Size([10]))
    >>> ds.set_epoch(1)
    >>> torch.equal(ds[0]["mix_sig"], item["mix_sig"])
    False
    """

    def __init__(
        self,
        seed=1234,
        epoch_size=1000,
        seconds=4.0,
        sample_rate=8000,
        min_events=2,
        max_events=4,
        multi_target_prob=0.25,
    ):
        _check_config(
            seconds, sample_rate, min_events, max_events, multi_target_prob
        )
        if _nonneg_int("epoch_size", epoch_size) == 0:
            raise ValueError("epoch_size must be positive; got 0")
        self.seed = _nonneg_int("seed", seed)
        self.epoch_size = int(epoch_size)
        self.kwargs = {
            "seconds": seconds,
            "sample_rate": sample_rate,
            "min_events": min_events,
        }
        self.kwargs.update(
            max_events=max_events, multi_target_prob=multi_target_prob
        )
        self.epoch = 0

    def set_epoch(self, epoch):
        """Selects the epoch whose mixtures the following items come from.

        Arguments
        ---------
        epoch : int
            The epoch (SpeechBrain's counter starts at 1).

        Example
        -------
        >>> ds = SynthEventsTrainSet(epoch_size=2, seconds=0.5)
        >>> ds.set_epoch(3)
        >>> ds[1]["id"]
        'train_e3_000001'
        """
        self.epoch = _nonneg_int("epoch", epoch)

    def __len__(self):
        return self.epoch_size

    def __getitem__(self, index):
        if not 0 <= index < self.epoch_size:
            raise IndexError(
                f"index {index} out of range for an epoch of {self.epoch_size}"
            )
        m = make_mixture(
            self.seed, index, split="train", epoch=self.epoch, **self.kwargs
        )
        return {
            "id": f"train_e{self.epoch}_{index:06d}",
            "mix_sig": torch.from_numpy(m["mix"]),
            "target_sig": torch.from_numpy(m["target"]),
            "label": labels_to_multihot(m["labels"]),
        }
