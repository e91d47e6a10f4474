"""Data preparation of Libri2Mix for target-speaker extraction (TSE).

Reads the LibriMix metadata of one Libri2Mix version (``wav8k/min`` by default) and writes, in
``save_folder``, CSV lists with absolute paths re-rooted under the user's ``data_folder``:

* ``libri2mix_<subset>_<mix_type>.csv`` for the train subset, ``dev`` and ``test``, one row per
  (mixture, target speaker), both targets of every mixture::

      (
          ID,
          duration,
          mix_wav,
          target_wav,
          enroll_wav,
          spk_id,
          target_utt,
          enroll_utt,
      )

  ``ID`` is ``<mixture_ID>_s1`` or ``<mixture_ID>_s2``; ``duration`` is in seconds.
* ``libri2mix_<train_subset>_utts.csv`` (``ID,duration,wav,spk_id``): one row per distinct
  utterance of the train subset (its longest source file), for random enrollments and dynamic
  mixing.
* ``libri2mix_<train_subset>_noise.csv`` (``ID,duration,wav``): the train noise files
  (``mix_both`` only).

Enrollment protocol. With SpeakerBeam's ``map_mixture2enrollment`` lists (given by the user; they
are under an evaluation-only licence and never shipped), dev and test rows reproduce the lists
exactly, self-enrollments included, so results are comparable with published ones. Otherwise
(always for train) each (mixture, target) gets a fixed, seeded draw among the target speaker's
clean source files in other mixtures of the same subset, excluding the target utterance, and
preferring files of at least ``enroll_seconds``. Such dev/test results are not directly comparable
with SpeakerBeam's lists: say so when reporting them.

Authors
 * speechbrain-crossmamba contributors
"""

import csv
import json
import logging
import os
import random
import re

logger = logging.getLogger(__name__)

MIX_TYPES = (
    "mix_clean",
    "mix_both",
)  # mix_single has no interferer: not a TSE task
TRAIN_SUBSETS = ("train-100", "train-360")
MIXTURE_COLUMNS = [
    "ID",
    "duration",
    "mix_wav",
    "target_wav",
    "enroll_wav",
    "spk_id",
    "target_utt",
    "enroll_utt",
]
UTT_COLUMNS = ["ID", "duration", "wav", "spk_id"]
NOISE_COLUMNS = ["ID", "duration", "wav"]
MAP_NAME = "map_mixture2enrollment"
OPTIONS_FILE = "libri2mix_tse_options.json"
OUTPUT_KEYS = ("train", "train_utts", "train_noise", "valid", "test")


def prepare_libri2mix_tse(
    data_folder,
    save_folder,
    version="wav8k/min",
    mix_type="mix_both",
    train_subset="train-100",
    enroll_map=None,
    seed=1,
    enroll_seconds=3.0,
):
    """Writes the Libri2Mix TSE CSV lists (see the module docstring) and returns their paths.

    Arguments
    ---------
    data_folder : str
        The folder holding ``Libri2Mix/`` (or the ``Libri2Mix`` folder itself).
    save_folder : str
        Where the CSVs go (created if needed).
    version : str
        ``wav8k/min``, ``wav8k/max``, ``wav16k/min`` or ``wav16k/max``.
    mix_type : str
        ``mix_clean`` or ``mix_both`` (two speakers + noise). ``mix_single`` (one speaker + noise)
        has no interferer, so it is not a target-speaker extraction task, and is refused.
    train_subset : str
        ``train-100`` or ``train-360``.
    enroll_map : str, optional
        SpeakerBeam's enrollment lists: a folder holding ``<subset>/map_mixture2enrollment``
        (used for dev and test where present), or one ``map_mixture2enrollment`` file (used for
        test). Subsets without a list get the seeded draw.
    seed : int
        Seed of the enrollment draw (each (mixture, target) is drawn independently of the others).
    enroll_seconds : float
        Seeded draws prefer enrollment files at least this long (falling back to any file of the
        speaker when none is).

    Returns
    -------
    dict
        ``{"train", "train_utts", "train_noise", "valid", "test"}``: CSV paths (``train_noise``
        is None for ``mix_clean``). If the outputs exist and were written with the same
        arguments, they are kept and returned as they are.

    Example
    -------
    >>> import tempfile
    >>> prepare_libri2mix_tse("/no/such/folder", tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    FileNotFoundError: Libri2Mix data folder not found: /no/such/folder
    """
    if mix_type not in MIX_TYPES:
        raise ValueError(
            f"unknown mix_type {mix_type!r}; use one of {', '.join(MIX_TYPES)}"
        )
    if train_subset not in TRAIN_SUBSETS:
        raise ValueError(
            f"unknown train_subset {train_subset!r}; use one of {', '.join(TRAIN_SUBSETS)}"
        )
    version, sample_rate = _parse_version(version)
    version_dir = _version_dir(data_folder, version)
    subsets = {"train": train_subset, "valid": "dev", "test": "test"}
    for subset in subsets.values():
        folder = os.path.join(version_dir, subset)
        if not os.path.isdir(folder):
            raise FileNotFoundError(
                f"Libri2Mix {subset} folder not found: {folder}"
            )
    if enroll_map is not None and not os.path.exists(enroll_map):
        raise FileNotFoundError(f"enrollment map not found: {enroll_map}")

    save_folder = os.path.abspath(save_folder)
    names = {
        "train_utts": f"{train_subset}_utts",
        "train_noise": f"{train_subset}_noise",
    }
    names.update(
        {key: f"{subset}_{mix_type}" for key, subset in subsets.items()}
    )
    outputs = {
        key: os.path.join(save_folder, f"libri2mix_{names[key]}.csv")
        for key in OUTPUT_KEYS
    }
    outputs["train_noise"] = (
        None if mix_type == "mix_clean" else outputs["train_noise"]
    )
    options = {
        "data_folder": os.path.abspath(data_folder),
        "save_folder": save_folder,
        "version": version,
    }
    options.update(
        mix_type=mix_type,
        train_subset=train_subset,
        seed=seed,
        enroll_seconds=enroll_seconds,
    )
    options["enroll_map"] = (
        None if enroll_map is None else os.path.abspath(enroll_map)
    )
    options_path = os.path.join(save_folder, OPTIONS_FILE)
    if _can_skip(outputs, options, options_path):
        logger.info(
            "Libri2Mix TSE lists in %s are up to date, skipping preparation",
            save_folder,
        )
        return outputs

    os.makedirs(save_folder, exist_ok=True)
    if os.path.exists(
        options_path
    ):  # the lists are about to change: never reuse a half-written set
        os.remove(options_path)
    maps = _find_maps(enroll_map)
    seeded_eval = []
    for key, subset in subsets.items():
        mixtures = _read_metadata(version_dir, subset, mix_type, sample_rate)
        if maps.get(subset):
            rows = _map_rows(maps[subset], mixtures, version_dir, subset)
        else:
            rows = _seeded_rows(mixtures, seed, enroll_seconds or 0.0, subset)
            if key != "train":
                seeded_eval.append(subset)
        _write_csv(outputs[key], MIXTURE_COLUMNS, rows)
        logger.info(
            "wrote %d rows (%d mixtures) to %s",
            len(rows),
            len(mixtures),
            outputs[key],
        )
        if key == "train":
            _write_csv(
                outputs["train_utts"], UTT_COLUMNS, _utterance_rows(mixtures)
            )
            if outputs["train_noise"]:
                noise = [
                    [m["id"], m["duration"], m["noise"]]
                    for m in mixtures.values()
                ]
                _write_csv(outputs["train_noise"], NOISE_COLUMNS, noise)
    if seeded_eval:
        logger.warning(
            "no SpeakerBeam enrollment map for %s: using seeded enrollments (seed %s), a protocol that "
            "differs from SpeakerBeam's lists; results are not directly comparable",
            " and ".join(seeded_eval),
            seed,
        )
    with open(options_path + ".tmp", "w") as f:
        json.dump(options, f, indent=1)
    os.replace(options_path + ".tmp", options_path)
    return outputs


def _parse_version(version):
    """Normalises ``wav8k/min``-style versions and returns ``(version, sample_rate)``."""
    parts = [p for p in re.split(r"[\\/]", str(version)) if p]
    rates = {"wav8k": 8000, "wav16k": 16000}
    if (
        len(parts) != 2
        or parts[0] not in rates
        or parts[1] not in ("min", "max")
    ):
        raise ValueError(
            f"unknown Libri2Mix version {version!r}; use wav8k|wav16k / min|max, e.g. 'wav8k/min'"
        )
    return "/".join(parts), rates[parts[0]]


def _version_dir(data_folder, version):
    """``<data_folder>/Libri2Mix/<version>``, accepting the ``Libri2Mix`` folder itself."""
    if not os.path.isdir(data_folder):
        raise FileNotFoundError(
            f"Libri2Mix data folder not found: {data_folder}"
        )
    data_folder = os.path.abspath(data_folder)
    if os.path.isdir(os.path.join(data_folder, "Libri2Mix")):
        return os.path.join(data_folder, "Libri2Mix", *version.split("/"))
    if os.path.basename(data_folder) == "Libri2Mix":
        return os.path.join(data_folder, *version.split("/"))
    raise FileNotFoundError(
        f"Libri2Mix folder not found: {os.path.join(data_folder, 'Libri2Mix')}"
    )


def _can_skip(outputs, options, options_path):
    """True if every output exists and the saved options equal ``options``."""
    if not all(os.path.isfile(path) for path in outputs.values() if path):
        return False
    try:
        with open(options_path) as f:
            return json.load(f) == options
    except (OSError, ValueError):
        return False


def _find_maps(enroll_map):
    """``{subset: map file}`` from the ``enroll_map`` argument."""
    if enroll_map is None:
        return {}
    if os.path.isfile(enroll_map):
        return {"test": enroll_map}
    maps = {}
    for subset in ("dev", "test"):
        path = os.path.join(enroll_map, subset, MAP_NAME)
        if os.path.isfile(path):
            maps[subset] = path
        else:
            logger.warning(
                "no %s in %s: %s falls back to seeded enrollments",
                MAP_NAME,
                enroll_map,
                subset,
            )
    return maps


def _speaker(utterance):
    """LibriSpeech speaker of an utterance id (``19-198-0001`` -> ``19``)."""
    return utterance.split("-", 1)[0]


def _reroot(path, version_dir):
    """Moves a generation-time path under the user's tree, keeping ``<subset>/<dir>/<file>``."""
    parts = [p for p in re.split(r"[\\/]", path) if p]
    if len(parts) < 3:
        raise ValueError(
            f"cannot re-root path {path!r}: expected .../<subset>/<dir>/<file>.wav"
        )
    return os.path.join(version_dir, *parts[-3:])


def _read_metadata(version_dir, subset, mix_type, sample_rate):
    """Reads a LibriMix metadata CSV by header into ``{mixture_ID: mixture}``, in file order."""
    path = os.path.join(
        version_dir, "metadata", f"mixture_{subset}_{mix_type}.csv"
    )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Libri2Mix metadata not found: {path}")
    required = [
        "mixture_ID",
        "mixture_path",
        "source_1_path",
        "source_2_path",
        "length",
    ]
    if mix_type != "mix_clean":
        required.append("noise_path")
    mixtures = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = header
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {', '.join(missing)} (header: {','.join(header)})"
            )
        for number, row in enumerate(reader, start=2):
            if any(row.get(c) is None for c in required):
                raise ValueError(f"{path} line {number}: too few fields")
            mixture_id = row["mixture_ID"].strip()
            utterances = mixture_id.split("_")
            if len(utterances) != 2 or not all(utterances):
                raise ValueError(
                    f"{path} line {number}: mixture_ID {mixture_id!r} is not <utt1>_<utt2>"
                )
            if mixture_id in mixtures:
                raise ValueError(
                    f"{path} line {number}: duplicate mixture_ID {mixture_id}"
                )
            try:
                duration = float(row["length"]) / sample_rate
            except ValueError:
                raise ValueError(
                    f"{path} line {number}: length {row['length']!r} is not a number"
                ) from None
            mixtures[mixture_id] = {
                "id": mixture_id,
                "duration": duration,
                "mix": _reroot(row["mixture_path"].strip(), version_dir),
                "sources": {
                    "s1": (
                        utterances[0],
                        _reroot(row["source_1_path"].strip(), version_dir),
                    ),
                    "s2": (
                        utterances[1],
                        _reroot(row["source_2_path"].strip(), version_dir),
                    ),
                },
                "noise": _reroot(row["noise_path"].strip(), version_dir)
                if "noise_path" in required
                else None,
            }
    if not mixtures:
        raise ValueError(f"{path}: no mixtures")
    return mixtures


def _row(mixture, slot, enroll_wav, enroll_utt):
    """A mixture CSV row (``MIXTURE_COLUMNS``)."""
    utterance, target_wav = mixture["sources"][slot]
    row = [
        f"{mixture['id']}_{slot}",
        mixture["duration"],
        mixture["mix"],
        target_wav,
        enroll_wav,
    ]
    return row + [_speaker(utterance), utterance, enroll_utt]


def _seeded_rows(mixtures, seed, enroll_seconds, subset):
    """Rows with a seeded enrollment per (mixture, target), independent of the row order."""
    by_speaker = {}
    for mixture in mixtures.values():
        for utterance, wav in mixture["sources"].values():
            entry = (wav, utterance, mixture["id"], mixture["duration"])
            by_speaker.setdefault(_speaker(utterance), []).append(entry)
    for entries in by_speaker.values():
        entries.sort()
    rows, dropped = [], 0
    for mixture in mixtures.values():
        for slot in ("s1", "s2"):
            utterance = mixture["sources"][slot][0]
            candidates = [
                c
                for c in by_speaker[_speaker(utterance)]
                if c[2] != mixture["id"] and c[1] != utterance
            ]
            candidates = [
                c for c in candidates if c[3] >= enroll_seconds
            ] or candidates
            if not candidates:
                dropped += 1
                continue
            enroll_wav, enroll_utt = random.Random(
                f"{seed}:{mixture['id']}:{slot}"
            ).choice(candidates)[:2]
            rows.append(_row(mixture, slot, enroll_wav, enroll_utt))
    if dropped:
        logger.warning(
            "%s: dropped %d of %d (mixture, target) rows whose speaker has no other utterance to enroll",
            subset,
            dropped,
            2 * len(mixtures),
        )
    return rows


def _map_rows(map_path, mixtures, version_dir, subset):
    """Rows of a SpeakerBeam ``map_mixture2enrollment`` list, in its order, reproduced as-is."""
    rows, seen, self_enrolled = [], set(), 0
    with open(map_path) as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{map_path} line {number}"
            if len(fields) != 3:
                expected = (
                    "<mixture_ID> <target_utterance_ID> <s1|s2>/<mixture_ID>"
                )
                raise ValueError(
                    f"{where}: expected '{expected}', got {line.strip()!r}"
                )
            mixture_id, target, enroll = fields
            mixture = mixtures.get(mixture_id)
            if mixture is None:
                raise ValueError(
                    f"{where}: mixture {mixture_id} is not in the {subset} metadata"
                )
            slots = [
                s for s in ("s1", "s2") if mixture["sources"][s][0] == target
            ]
            if not slots:
                raise ValueError(
                    f"{where}: target utterance {target} is not in mixture {mixture_id}"
                )
            slot = slots[0]
            enroll_slot, _, other = enroll.partition("/")
            halves = other.split("_")
            if (
                enroll_slot not in ("s1", "s2")
                or len(halves) != 2
                or not all(halves)
            ):
                raise ValueError(
                    f"{where}: enrollment {enroll!r} is not <s1|s2>/<utt1>_<utt2>"
                )
            enroll_wav = os.path.join(
                version_dir, subset, enroll_slot, other + ".wav"
            )
            if not os.path.isfile(enroll_wav):
                raise FileNotFoundError(
                    f"{where}: enrollment file not found: {enroll_wav}"
                )
            if (mixture_id, slot) in seen:
                raise ValueError(
                    f"{where}: second entry for target {target} of {mixture_id}"
                )
            seen.add((mixture_id, slot))
            enroll_utt = halves[0] if enroll_slot == "s1" else halves[1]
            self_enrolled += enroll_utt == target
            rows.append(_row(mixture, slot, enroll_wav, enroll_utt))
    covered = len({key[0] for key in seen})
    logger.info(
        "%s: %d rows from %s (%d of %d mixtures; %d enrolled with the target utterance itself, kept)",
        subset,
        len(rows),
        map_path,
        covered,
        len(mixtures),
        self_enrolled,
    )
    return rows


def _utterance_rows(mixtures):
    """One row per distinct utterance: its longest source file."""
    best = {}
    for mixture in mixtures.values():
        for utterance, wav in mixture["sources"].values():
            if (
                utterance not in best
                or mixture["duration"] > best[utterance][0]
            ):
                best[utterance] = (mixture["duration"], wav)
    return [[u, d, wav, _speaker(u)] for u, (d, wav) in sorted(best.items())]


def _write_csv(path, columns, rows):
    """Writes a CSV atomically: a killed run never leaves a half-written list behind."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    os.replace(tmp, path)
