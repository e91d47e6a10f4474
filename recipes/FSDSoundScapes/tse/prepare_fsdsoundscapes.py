"""Data preparation of FSDSoundScapes (Waveformer's target sound extraction corpus).

The corpus is a set of scaper specifications plus the source clips they draw from::

    FSDSoundScapes/
        jams/{train,val,test}/<index>/mixture.jams     scaper spec of one soundscape
        jams/{train,val,test}/<index>/gt_events.csv    tab-separated, a ``label`` column
        FSDKaggle2018/{train,val,test}/<label>/*.wav   foreground clips (41 classes)
        TAU-acoustic-sounds/TAU-urban-acoustic-scenes-2019-development/<scene>/*.wav
        TAU-acoustic-sounds/TAU-urban-acoustic-scenes-2019-evaluation/<scene>/*.wav

Backgrounds come from the development set for train and val, from the evaluation set for test.
Each spec is rendered once with scaper (``generate_from_jams``) to 16-bit mono WAV at the spec's
rate (44.1 kHz) under ``<save_folder>/wav/<split>/<index>/``: ``mixture.wav`` and one
``<label>.wav`` per foreground class (the sum of that class's events), so training never runs
scaper. A ``done`` marker, written last, makes a killed run resume where it stopped; samples
already rendered need neither scaper nor the source clips.

Targets follow Waveformer's protocol: for the ``i``-th val sample (sorted by index) the first
``(i % max_num_targets) + 1`` labels of ``gt_events.csv``; for test the first ``max_num_targets``
labels. Training draws targets at random in Waveformer; here the train CSV holds one row per
(sample, label), plus, when ``max_num_targets > 1``, one row per sample with a seeded random
subset of 2..max_num_targets labels. A multi-label target is the sum of its label files, written
once as ``target_<label1>+<label2>.wav``.

Disk: rendering writes about 2 x 6 s x 44.1 kHz x 16 bit (about 1 MB) per sample, about 70 GB
for the full corpus (50,000 train, 5,000 val, 10,000 test soundscapes).

Authors
 * speechbrain-crossmamba contributors
"""

import csv
import logging
import os
import zlib

import numpy as np
import soundfile

logger = logging.getLogger(__name__)

CLASSES = (
    "Acoustic_guitar", "Applause", "Bark", "Bass_drum", "Burping_or_eructation", "Bus",
    "Cello", "Chime", "Clarinet", "Computer_keyboard", "Cough", "Cowbell", "Double_bass",
    "Drawer_open_or_close", "Electric_piano", "Fart", "Finger_snapping", "Fireworks", "Flute",
    "Glockenspiel", "Gong", "Gunshot_or_gunfire", "Harmonica", "Hi-hat", "Keys_jangling",
    "Knock", "Laughter", "Meow", "Microwave_oven", "Oboe", "Saxophone", "Scissors", "Shatter",
    "Snare_drum", "Squeak", "Tambourine", "Tearing", "Telephone", "Trumpet",
    "Violin_or_fiddle", "Writing",
)  # fmt: skip
CSV_COLUMNS = (
    "ID",
    "duration",
    "mix_wav",
    "target_wav",
    "labels",
    "label_vector",
)
SPLITS = (
    ("train", "train"),
    ("val", "valid"),
    ("test", "test"),
)  # (corpus name, CSV key)
BACKGROUND_SETS = {
    "train": "development",
    "val": "development",
    "test": "evaluation",
}
SCAPER_MISSING = (
    "rendering FSDSoundScapes needs scaper: "
    "pip install -r recipes/FSDSoundScapes/tse/extra_requirements.txt"
)
_CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}
_FULL_SCALE = 32767 / 32768  # the largest 16-bit sample


def labels_to_vector(labels):
    """The multi-hot vector (41 ints, 0 or 1, in ``CLASSES`` order) of a label set.

    Arguments
    ---------
    labels : list of str or str
        Class names (a string is split on whitespace).

    Returns
    -------
    list of int

    Example
    -------
    >>> vector = labels_to_vector(["Bark", "Acoustic_guitar"])
    >>> len(vector), vector[:4]
    (41, [1, 0, 1, 0])
    >>> labels_to_vector("Purr")
    Traceback (most recent call last):
    ...
    ValueError: unknown FSDSoundScapes label: 'Purr'
    """
    if isinstance(labels, str):
        labels = labels.split()
    vector = [0] * len(CLASSES)
    for label in labels:
        if label not in _CLASS_INDEX:
            raise ValueError(f"unknown FSDSoundScapes label: {label!r}")
        vector[_CLASS_INDEX[label]] = 1
    return vector


def render_sample(jams_path, fg_path, bg_path, out_folder):
    """Renders one scaper spec to ``mixture.wav`` and one ``<label>.wav`` per foreground class.

    Files are mono 16-bit PCM at the spec's rate; a label's file is the sum of its events. If
    the mixture or a sum of label files could clip, everything is scaled by one factor, so the
    mixture stays the background plus the events. Each file is written under a temporary name
    and renamed; the ``done`` marker is written last.

    Arguments
    ---------
    jams_path : str
        The ``mixture.jams`` spec.
    fg_path : str
        The foreground folder of ``<label>/*.wav`` (``FSDKaggle2018/<split>``).
    bg_path : str
        The background folder of ``<scene>/*.wav`` (a TAU folder).
    out_folder : str
        Where the files go (created if missing).

    Returns
    -------
    dict
        ``sample_rate``, ``labels`` (foreground classes, in order of appearance) and ``scale``
        (the anti-clipping factor, 1.0 if none was needed).

    Example
    -------
    >>> render_sample("/no/such/mixture.jams", "/fg", "/bg", "/tmp/out")
    Traceback (most recent call last):
    ...
    FileNotFoundError: scaper spec not found: /no/such/mixture.jams
    """
    if not os.path.isfile(jams_path):
        raise FileNotFoundError(f"scaper spec not found: {jams_path}")
    try:
        import scaper
    except ImportError:
        raise ImportError(SCAPER_MISSING) from None
    mixture, jam, _, event_audio = scaper.generate_from_jams(
        jams_path, fg_path=fg_path, bg_path=bg_path
    )
    annotation = jam.search(namespace="scaper")[0]
    sample_rate = int(annotation.sandbox.scaper["sr"])
    if mixture is None:
        raise ValueError(f"{jams_path}: scaper rendered no audio (no events)")
    mixture = _mono(mixture, jams_path)
    tracks = {}
    for observation, audio in zip(annotation.data, event_audio):
        if observation.value["role"] != "foreground":
            continue
        label = observation.value["label"]
        audio = _fit(_mono(audio, jams_path), len(mixture))
        tracks[label] = tracks[label] + audio if label in tracks else audio
    # Any target is a sum of label files: bound every such sum, not only each file.
    peak = np.max(np.abs(mixture), initial=0.0)
    if tracks:
        stacked = np.stack(list(tracks.values()))
        positive, negative = (
            np.clip(stacked, 0, None),
            np.clip(-stacked, 0, None),
        )
        peak = max(peak, positive.sum(0).max(), negative.sum(0).max())
    scale = _FULL_SCALE / peak if peak > _FULL_SCALE else 1.0
    os.makedirs(out_folder, exist_ok=True)
    marker = os.path.join(out_folder, "done")
    if os.path.exists(marker):
        os.remove(marker)
    _write_wav(
        os.path.join(out_folder, "mixture.wav"),
        _to_pcm16(mixture * scale),
        sample_rate,
    )
    for label, audio in tracks.items():
        _write_wav(
            os.path.join(out_folder, f"{label}.wav"),
            _to_pcm16(audio * scale),
            sample_rate,
        )
    with open(marker + ".part", "w") as f:
        f.write(f"{sample_rate} {scale!r}\n")
    os.replace(marker + ".part", marker)
    return {"sample_rate": sample_rate, "labels": list(tracks), "scale": scale}


def prepare_fsdsoundscapes(
    data_folder, save_folder, max_num_targets=1, seed=1, csv_folder=None
):
    """Renders FSDSoundScapes once (if needed) and writes the train, valid and test CSVs.

    Arguments
    ---------
    data_folder : str
        The folder holding ``FSDSoundScapes/`` (or that folder itself).
    save_folder : str
        Where ``wav/<split>/<index>/`` (and, without ``csv_folder``, the CSVs) go.
    max_num_targets : int
        Largest number of target classes of a row (see the module docstring).
    seed : int
        Seed of the train subsets (drawn per sample, independent of order).
    csv_folder : str, optional
        Where the CSVs go instead of ``save_folder`` (then a fully rendered ``save_folder``
        is only read).

    Returns
    -------
    dict
        ``{"train": csv, "valid": csv, "test": csv}``; columns ID, duration, mix_wav,
        target_wav, labels (space-separated), label_vector (41 space-separated 0/1).

    Example
    -------
    >>> import tempfile, shutil
    >>> root = tempfile.mkdtemp()
    >>> for split in ("train", "val", "test"):
    ...     os.makedirs(os.path.join(root, "FSDSoundScapes", "jams", split))
    >>> csvs = prepare_fsdsoundscapes(root, os.path.join(root, "prepared"))
    >>> sorted(csvs), open(csvs["valid"]).read().strip()
    (['test', 'train', 'valid'], 'ID,duration,mix_wav,target_wav,labels,label_vector')
    >>> shutil.rmtree(root)
    """
    if int(max_num_targets) < 1 or int(seed) < 0:
        raise ValueError(
            f"need max_num_targets >= 1 and seed >= 0, got {max_num_targets}, {seed}"
        )
    if not os.path.isdir(data_folder):
        raise FileNotFoundError(
            f"FSDSoundScapes data folder not found: {data_folder}"
        )
    root = os.path.join(data_folder, "FSDSoundScapes")
    root = os.path.abspath(root if os.path.isdir(root) else data_folder)
    save_folder = os.path.abspath(save_folder)
    csv_folder = os.path.abspath(csv_folder or save_folder)
    # Check everything (folders, event lists) before rendering anything.
    scans = {
        split: _scan_split(root, save_folder, split) for split, _ in SPLITS
    }
    for split, (indices, _, todo, sources) in scans.items():
        if todo:
            logger.info(
                "rendering %d of %d %s soundscapes with scaper",
                len(todo),
                len(indices),
                split,
            )
        for count, index in enumerate(todo, 1):
            jams_path = os.path.join(root, "jams", split, index, "mixture.jams")
            render_sample(
                jams_path,
                *sources,
                os.path.join(save_folder, "wav", split, index),
            )
            if count % 1000 == 0:
                logger.info("%s: rendered %d / %d", split, count, len(todo))
    csvs = {}
    for split, key in SPLITS:
        indices, labels, _, _ = scans[split]
        rows = []
        for position, index in enumerate(indices):
            targets = _target_sets(
                split,
                position,
                index,
                labels[index],
                int(max_num_targets),
                int(seed),
            )
            rows += _rows(
                os.path.join(save_folder, "wav", split, index),
                f"{split}_{index}",
                targets,
            )
        csvs[key] = os.path.join(csv_folder, f"fsdsoundscapes_{split}.csv")
        _write_csv(csvs[key], rows)
        logger.info("%s: %d rows", csvs[key], len(rows))
    return csvs


def _scan_split(root, save_folder, split):
    """(sorted indices, labels per index, indices to render, (fg_path, bg_path) or None)."""
    jams_root = _require_folder(os.path.join(root, "jams", split))
    indices = sorted((n for n in os.listdir(jams_root) if n.isdigit()), key=int)
    indices = [n for n in indices if os.path.isdir(os.path.join(jams_root, n))]
    if not indices:
        logger.warning("no samples in %s", jams_root)
    labels = {
        n: _read_labels(os.path.join(jams_root, n, "gt_events.csv"))
        for n in indices
    }
    for index in indices:
        if not labels[index]:
            logger.warning(
                "%s/%s has no foreground labels: no rows", split, index
            )
    wav_root = os.path.join(save_folder, "wav", split)
    todo = [
        n
        for n in indices
        if not os.path.isfile(os.path.join(wav_root, n, "done"))
    ]
    sources = None
    if todo:
        tau = f"TAU-urban-acoustic-scenes-2019-{BACKGROUND_SETS[split]}"
        sources = (
            _require_folder(os.path.join(root, "FSDKaggle2018", split)),
            _require_folder(os.path.join(root, "TAU-acoustic-sounds", tau)),
        )
    return indices, labels, todo, sources


def _rows(folder, prefix, targets):
    """The CSV rows of one rendered sample, one per target label set."""
    if not targets:
        return []
    mix_wav = _require_file(os.path.join(folder, "mixture.wav"))
    duration = soundfile.info(mix_wav).duration
    return [
        {
            "ID": f"{prefix}_{'+'.join(target)}",
            "duration": f"{duration:.4f}",
            "mix_wav": mix_wav,
            "target_wav": _target_file(folder, target),
            "labels": " ".join(target),
            "label_vector": " ".join(map(str, labels_to_vector(target))),
        }
        for target in targets
    ]


def _target_sets(split, position, index, labels, max_num_targets, seed):
    """The label sets of one sample's rows (Waveformer for val/test, see the docstring)."""
    if not labels:
        return []
    if split == "val":
        return [labels[: position % max_num_targets + 1]]
    if split == "test":
        return [labels[:max_num_targets]]
    sets = [[label] for label in labels]
    if max_num_targets > 1 and len(labels) >= 2:
        rng = np.random.default_rng(
            [seed, zlib.crc32(split.encode()), int(index)]
        )
        size = int(rng.integers(2, min(max_num_targets, len(labels)) + 1))
        chosen = np.sort(rng.choice(len(labels), size=size, replace=False))
        sets.append([labels[i] for i in chosen])
    return sets


def _target_file(folder, labels):
    """The target WAV of a label set; a multi-label target is written once as a sum."""
    sources = [
        _require_file(os.path.join(folder, f"{label}.wav")) for label in labels
    ]
    if len(sources) == 1:
        return sources[0]
    path = os.path.join(folder, "target_" + "+".join(labels) + ".wav")
    if not os.path.isfile(path):
        total, sample_rate = 0, None
        for source in sources:
            audio, sample_rate = soundfile.read(source, dtype="int16")
            total = total + audio.astype(np.int32)
        _write_wav(
            path, np.clip(total, -32768, 32767).astype(np.int16), sample_rate
        )
    return path


def _read_labels(path):
    """The distinct labels of a ``gt_events.csv``, in order of appearance."""
    if not os.path.isfile(path):
        raise ValueError(f"missing event list: {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        if not reader.fieldnames or "label" not in reader.fieldnames:
            raise ValueError(
                f"{path}: no 'label' column in the (tab-separated) header"
            )
        labels = []
        for row in reader:
            label = (row["label"] or "").strip()
            if label not in _CLASS_INDEX:
                raise ValueError(f"{path}: unknown label {label!r}")
            if label not in labels:
                labels.append(label)
    return labels


def _mono(audio, jams_path):
    """A (n_samples,) float64 array from scaper's (n_samples, n_channels) output."""
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim > 2 or (audio.ndim == 2 and audio.shape[1] != 1):
        raise ValueError(
            f"{jams_path}: {audio.shape[-1]} channels, FSDSoundScapes is mono"
        )
    return audio.reshape(-1)


def _fit(audio, length):
    """Truncates or zero-pads ``audio`` to ``length`` samples."""
    return np.pad(audio[:length], (0, max(0, length - len(audio))))


def _to_pcm16(audio):
    """Float samples (full scale 1.0) to int16, rounded and clipped."""
    return np.clip(np.round(audio * 32768), -32768, 32767).astype(np.int16)


def _write_wav(path, audio, sample_rate):
    """Writes 16-bit PCM WAV under a temporary name, then renames it into place."""
    soundfile.write(
        path + ".part", audio, sample_rate, subtype="PCM_16", format="WAV"
    )
    os.replace(path + ".part", path)


def _write_csv(path, rows):
    """Writes the CSV atomically (temporary file, then rename)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".part", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(path + ".part", path)


def _require_folder(path):
    """Returns ``path`` if it is a folder, else raises a one-line FileNotFoundError."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"FSDSoundScapes folder not found: {path}")
    return path


def _require_file(path):
    """Returns ``path`` if it is a file, else raises a one-line FileNotFoundError."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"rendered file not found: {path}")
    return path
