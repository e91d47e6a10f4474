"""CSV data of target extraction: file checks and the one pipeline every recipe shares.

A mixture CSV has a header and one row per (mixture, target)::

    ID,duration,mix_wav,target_wav,enroll_wav[,...]    (speaker clue: enrollment speech)
    ID,duration,mix_wav,target_wav,labels[,...]        (class clue: space-separated labels)

Extra columns are kept and ignored. The synthetic corpora (``synth_speakers``,
``synth_events``) and the real-data recipes write these columns, so one pipeline serves all.

Every column named ``wav`` or ending in ``_wav`` is an audio file; :func:`check_csv` opens the
header of each before training, so a missing, corrupt, stereo or wrongly sampled file stops the
run at once with its name (or is logged and skipped with ``skip_bad_files``).

Authors
 * speechbrain-crossmamba contributors
"""

import csv
import logging
import os

import soundfile
import torch

import speechbrain as sb
from speechbrain.dataio.dataio import read_audio

logger = logging.getLogger(__name__)


def audio_columns(fieldnames):
    """The columns of a CSV header that hold audio files.

    Arguments
    ---------
    fieldnames : list of str
        The header.

    Returns
    -------
    list of str
        The ``wav`` and ``*_wav`` columns, in header order.

    Example
    -------
    >>> audio_columns(
    ...     ["ID", "duration", "mix_wav", "target_wav", "labels", "wav"]
    ... )
    ['mix_wav', 'target_wav', 'wav']
    """
    return [c for c in fieldnames if c == "wav" or c.endswith("_wav")]


def check_audio_file(path, sample_rate=None):
    """Returns ``None`` if ``path`` is a readable mono audio file at ``sample_rate``, else why not.

    Arguments
    ---------
    path : str
        The audio file.
    sample_rate : int, optional
        The rate it must have; any when None.

    Returns
    -------
    str or None
        The problem (e.g. ``'missing file'``), or None.

    Example
    -------
    >>> check_audio_file("/no/such.wav")
    'missing file'
    """
    if not os.path.isfile(path):
        return "missing file"
    try:
        info = soundfile.info(path)
    except (
        Exception
    ) as error:  # soundfile raises several types for broken files
        return f"corrupt or unreadable audio ({str(error).splitlines()[0]})"
    if info.frames == 0:
        return "empty audio"
    if info.channels != 1:
        return f"{info.channels} channels, expected mono"
    if sample_rate is not None and info.samplerate != sample_rate:
        return (
            f"wrong sample rate {info.samplerate} Hz, expected {sample_rate} Hz"
        )
    return None


def check_csv(
    csv_path, sample_rate=None, skip_bad_files=False, replacements=None
):
    """Checks every audio file of a CSV before training.

    Arguments
    ---------
    csv_path : str
        The CSV (header first; an ``ID`` column; audio in ``wav`` / ``*_wav`` columns).
    sample_rate : int, optional
        The sampling rate every file must have.
    skip_bad_files : bool
        If False (default), the first bad file raises a one-line ``ValueError`` naming the CSV,
        the row and the file. If True, each bad file is logged and its row is returned for
        exclusion.
    replacements : dict, optional
        ``{"data_root": "/path"}``: ``$data_root`` in paths is replaced, as in SpeechBrain's
        ``load_data_csv``.

    Returns
    -------
    set
        IDs of the rows to skip (empty unless ``skip_bad_files``).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "list.csv")
    >>> _ = open(path, "w").write("ID,duration,wav\\nu1,1.0,/no/such.wav\\n")
    >>> check_csv(path)
    Traceback (most recent call last):
    ...
    ValueError: list.csv, row u1: missing file: /no/such.wav (column wav)
    >>> check_csv(path, skip_bad_files=True)
    {'u1'}
    """
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"data list not found: {csv_path}")
    bad = set()
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "ID" not in reader.fieldnames:
            raise ValueError(f"{csv_path}: no header with an ID column")
        columns = audio_columns(reader.fieldnames)
        for row in reader:
            for column in columns:
                path = row[column]
                for key, value in (replacements or {}).items():
                    path = path.replace("$" + key, str(value))
                problem = check_audio_file(path, sample_rate)
                if problem is None:
                    continue
                message = f"{os.path.basename(csv_path)}, row {row['ID']}: {problem}: {path} (column {column})"
                if not skip_bad_files:
                    raise ValueError(message)
                logger.warning("skipping %s", message)
                bad.add(row["ID"])
    return bad


def vector_from_text(text):
    """A clue vector written in a CSV cell as space-separated numbers (e.g. a multi-hot).

    Arguments
    ---------
    text : str
        The cell.

    Returns
    -------
    torch.Tensor
        ``[K]`` float vector.

    Example
    -------
    >>> vector_from_text("0 1 0 1")
    tensor([0., 1., 0., 1.])
    >>> vector_from_text("0 x")
    Traceback (most recent call last):
    ...
    ValueError: not a vector of numbers: '0 x'
    """
    try:
        return torch.tensor([float(v) for v in text.split()])
    except ValueError:
        raise ValueError(f"not a vector of numbers: {text!r}") from None


def interferer_enrollments(rows, utterances_csv, seed=0):
    """An enrollment of each mixture's interferer: another utterance of the interferer's speaker.

    For the check that the clue matters: given the interferer's enrollment instead of the
    target's, a model that uses its clue extracts the other speaker.

    Arguments
    ---------
    rows : dict
        ``{mixture ID: row}`` of a mixture CSV with an ``interf_wav`` column (SynthSpeakers).
    utterances_csv : str
        The split's ``ID,duration,wav,spk_id`` list, which holds ``interf_wav``.
    seed : int
        Picks among the speaker's other utterances.

    Returns
    -------
    dict
        ``{mixture ID: path}``.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "utts.csv")
    >>> _ = open(path, "w").write(
    ...     "ID,duration,wav,spk_id\\na,1,a.wav,s1\\nb,1,b.wav,s1\\nc,1,c.wav,s2\\n"
    ... )
    >>> interferer_enrollments({"m": {"interf_wav": "a.wav"}}, path)
    {'m': 'b.wav'}
    """
    import numpy as np

    speaker_of, by_speaker = {}, {}
    with open(utterances_csv, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            speaker_of[row["wav"]] = row["spk_id"]
            by_speaker.setdefault(row["spk_id"], []).append(row["wav"])
    rng, chosen = np.random.default_rng(seed), {}
    for key in sorted(rows):
        interf = rows[key].get("interf_wav")
        if interf not in speaker_of:
            raise ValueError(
                f"{utterances_csv}: the interferer {interf} of row {key} is not listed"
            )
        others = [w for w in by_speaker[speaker_of[interf]] if w != interf]
        if not others:
            raise ValueError(
                f"{utterances_csv}: the interferer of row {key} has no other utterance"
            )
        chosen[key] = others[int(rng.integers(len(others)))]
    return chosen


def mixture_dataset(
    csv_path,
    clue="enroll_sig",
    labels_to_clue=None,
    exclude=(),
    replacements=None,
    label_column="labels",
    interferer_utterances=None,
):
    """A ``DynamicItemDataset`` over a mixture CSV, giving ``mix_sig``, ``target_sig`` and the clue.

    Arguments
    ---------
    csv_path : str
        Mixture CSV (see the module docstring).
    clue : str
        ``enroll_sig`` (enrollment speech from ``enroll_wav``) or ``label`` (from ``labels``).
    labels_to_clue : callable, optional
        Maps the ``label_column`` cell to a clue tensor (e.g. ``synth_events.labels_to_multihot``
        for class names, :func:`vector_from_text` for a written multi-hot); needed when
        ``clue == "label"``.
    exclude : iterable
        Row IDs to leave out (the bad files found by :func:`check_csv`).
    replacements : dict, optional
        Path replacements, as in :func:`check_csv`.
    label_column : str
        The column holding the class clue (``labels``: names; FSDSoundScapes' ``label_vector``).
    interferer_utterances : str, optional
        The split's utterance list: items then also hold ``interf_enroll_sig``, an enrollment
        of the interferer (:func:`interferer_enrollments`), for the wrong-clue check.

    Returns
    -------
    speechbrain.dataio.dataset.DynamicItemDataset
        Items hold ``id``, ``mix_sig``, ``target_sig`` and ``clue``'s key.

    Example
    -------
    >>> import tempfile, torch
    >>> from speechbrain.dataio.dataio import write_audio
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("m", "t", "e"):
    ...     write_audio(
    ...         os.path.join(folder, name + ".wav"),
    ...         0.1 * torch.randn(800),
    ...         8000,
    ...     )
    >>> path = os.path.join(folder, "valid.csv")
    >>> _ = open(path, "w").write(
    ...     "ID,duration,mix_wav,target_wav,enroll_wav\\n"
    ...     "x,0.1,$root/m.wav,$root/t.wav,$root/e.wav\\n"
    ... )
    >>> item = mixture_dataset(path, replacements={"root": folder})[0]
    >>> sorted(item), item["mix_sig"].shape
    (['enroll_sig', 'id', 'mix_sig', 'target_sig'], torch.Size([800]))
    """
    data = sb.dataio.dataio.load_data_csv(
        csv_path, replacements=replacements or {}
    )
    for key in exclude:
        data.pop(key, None)
    if not data:
        raise ValueError(f"{csv_path}: no usable rows")
    keys = ["id", "mix_sig", "target_sig", clue]
    if interferer_utterances is not None:
        for key, path in interferer_enrollments(
            data, interferer_utterances
        ).items():
            data[key]["interf_enroll_wav"] = path
        keys.append("interf_enroll_sig")
    dataset = sb.dataio.dataset.DynamicItemDataset(data)
    if interferer_utterances is not None:
        dataset.add_dynamic_item(
            read_audio, takes="interf_enroll_wav", provides="interf_enroll_sig"
        )

    @sb.utils.data_pipeline.takes("mix_wav", "target_wav")
    @sb.utils.data_pipeline.provides("mix_sig", "target_sig")
    def audio_pipeline(mix_wav, target_wav):
        """Reads the mixture and the target (SpeechBrain dynamic item).

        Arguments
        ---------
        mix_wav, target_wav : str
            The two files.

        Yields
        ------
        mix_sig, target_sig : torch.Tensor
            The two signals.
        """
        yield read_audio(mix_wav)
        yield read_audio(target_wav)

    dataset.add_dynamic_item(audio_pipeline)
    if clue == "enroll_sig":
        dataset.add_dynamic_item(
            read_audio, takes="enroll_wav", provides="enroll_sig"
        )
    elif clue == "label":
        if labels_to_clue is None:
            raise ValueError(
                "clue 'label' needs labels_to_clue (e.g. synth_events.labels_to_multihot)"
            )
        dataset.add_dynamic_item(
            labels_to_clue, takes=label_column, provides="label"
        )
    else:
        raise ValueError(f"unknown clue {clue!r}; use 'enroll_sig' or 'label'")
    dataset.set_output_keys(keys)
    return dataset
