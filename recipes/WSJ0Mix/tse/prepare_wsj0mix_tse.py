"""Data preparation of WSJ0-2mix for target-speaker extraction (TSE).

Two on-disk layouts are accepted, looked for in this order:

* WSJ0-2mix-extr (SpEx/SpEx+): ``<data_folder>/wsj0_2mix_extr/<version>/{tr,cv,tt}/``
  ``{mix,s1,aux}/<utt1>_<snr1>_<utt2>_<snr2>_<auxID>.wav``, where ``utt1`` is the target,
  ``s1`` its clean source and ``aux`` an enrollment utterance (``auxID``) of the target speaker.
* plain WSJ0-2mix: ``<data_folder>/2speakers/<version>/{tr,cv,tt}/``
  ``{mix,s1,s2}/<utt1>_<snr1>_<utt2>_<snr2>.wav``.

``data_folder`` may also be the ``wsj0_2mix_extr`` or ``2speakers`` folder itself. Files are
keyed by listing ``mix/``: the partners of ``mix/<name>.wav`` are the same ``<name>.wav`` in the
source folders (names are never rebuilt from the list files, whose number of decimals differs
between the MATLAB and Python generators). The speaker of a WSJ utterance is the first three
characters of its id.

Protocol:

* extr: one row per mixture file, target ``s1``, enrollment ``aux`` (SpEx's protocol). Rows whose
  aux speaker is not the target speaker are dropped with a warning.
* plain: one row per (mixture, target), IDs ``<name>_s1`` and ``<name>_s2``, so both speakers are
  targets. The enrollment is a fixed seeded draw per (mixture, target), independent of the row
  order, among the target speaker's clean sources (``s1``/``s2`` files) in the other mixtures of
  the same subset, excluding the target utterance. This is not WSJ0-2mix-extr's protocol; say so
  in results. Rows without any candidate are dropped with a warning.

Written to ``save_folder`` (absolute paths, each CSV written atomically):

* ``wsj0mix_tse_{tr,cv,tt}.csv``: columns
  ``ID,duration,mix_wav,target_wav,enroll_wav,spk_id,target_utt,enroll_utt`` (duration of the
  mixture in seconds);
* ``wsj0mix_tse_tr_utts.csv``: ``ID,duration,wav,spk_id``, one row per distinct utterance of
  ``tr`` (the longest of its files), for dynamic mixing and enrollment draws in training;
* ``wsj0mix_tse_options.json``: the arguments and the layout; a later call with the same options
  and all outputs present returns at once.

Authors
 * speechbrain-crossmamba contributors
"""

import csv
import json
import logging
import os
import random
import re

import soundfile

logger = logging.getLogger(__name__)

SUBSETS = {"train": "tr", "valid": "cv", "test": "tt"}
MIX_HEADER = [
    "ID",
    "duration",
    "mix_wav",
    "target_wav",
    "enroll_wav",
    "spk_id",
    "target_utt",
    "enroll_utt",
]
UTT_HEADER = ["ID", "duration", "wav", "spk_id"]
LAYOUTS = {
    # layout: (folder name under data_folder, source folders)
    "wsj0_2mix_extr": ("wsj0_2mix_extr", ("s1", "aux")),
    "wsj0_2mix": ("2speakers", ("s1", "s2")),
}
OPTIONS_FILE = "wsj0mix_tse_options.json"
_UTT = r"([A-Za-z0-9]{3,})"
_SNR = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_NAME = {
    "wsj0_2mix": re.compile(rf"^{_UTT}_{_SNR}_{_UTT}_{_SNR}$"),
    "wsj0_2mix_extr": re.compile(rf"^{_UTT}_{_SNR}_{_UTT}_{_SNR}_{_UTT}$"),
}


def speaker_of(utt_id):
    """The WSJ speaker id of an utterance id (its first three characters).

    Example
    -------
    >>> speaker_of("01aa010b")
    '01a'
    """
    return utt_id[:3]


def parse_name(name, layout="wsj0_2mix"):
    """Splits a mixture name (no extension) into its utterance ids and SNRs.

    Arguments
    ---------
    name : str
        ``<utt1>_<snr1>_<utt2>_<snr2>`` (plain) or ``..._<auxID>`` (extr).
    layout : str
        ``wsj0_2mix`` or ``wsj0_2mix_extr``.

    Returns
    -------
    dict or None
        ``utt1``, ``snr1``, ``utt2``, ``snr2`` (strings, as written) and, for extr, ``aux``;
        None if the name does not parse.

    Example
    -------
    >>> parse_name("01aa010b_0.97482_22gc010a_-0.97482")["utt2"]
    '22gc010a'
    >>> parse_name("050a050a_-1.2_442o030z_1.2_050c0109", "wsj0_2mix_extr")[
    ...     "aux"
    ... ]
    '050c0109'
    >>> parse_name("not_a_mixture") is None
    True
    """
    match = _NAME[layout].match(name)
    if match is None:
        return None
    keys = ["utt1", "snr1", "utt2", "snr2", "aux"]
    return dict(zip(keys, match.groups()))


def find_layout(data_folder, version="wav8k/min"):
    """Finds the WSJ0-2mix layout under ``data_folder``.

    Arguments
    ---------
    data_folder : str
        Folder holding ``wsj0_2mix_extr`` and/or ``2speakers``, or one of these itself.
    version : str
        Sub-folder such as ``wav8k/min`` or ``wav16k/max``.

    Returns
    -------
    (str, str)
        The layout (``wsj0_2mix_extr`` or ``wsj0_2mix``) and the absolute folder holding
        ``tr``, ``cv`` and ``tt``.

    Example
    -------
    >>> find_layout("/no/such/folder")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: no WSJ0-2mix data in /no/such/folder: looked for /no/such/folder/...
    """
    data_folder = os.path.abspath(data_folder)
    candidates = [
        (layout, os.path.join(data_folder, folder, version))
        for layout, (folder, _) in LAYOUTS.items()
    ]
    candidates += [
        (layout, os.path.join(data_folder, version)) for layout in LAYOUTS
    ]
    for layout, root in candidates:
        folders = ("mix",) + LAYOUTS[layout][1]
        needed = [
            os.path.join(root, s, f) for s in SUBSETS.values() for f in folders
        ]
        if all(os.path.isdir(path) for path in needed):
            return layout, root
    looked = ", ".join(
        f"{root}/{{tr,cv,tt}}/{{{','.join(('mix',) + LAYOUTS[layout][1])}}}"
        for layout, root in candidates
    )
    raise FileNotFoundError(
        f"no WSJ0-2mix data in {data_folder}: looked for {looked}"
    )


def _duration(path):
    info = soundfile.info(path)
    return info.frames / info.samplerate


def _list_subset(root, subset, layout):
    """Mixtures of one subset, keyed by listing ``mix/``: a sorted list of dicts."""
    sources = LAYOUTS[layout][1]
    mix_dir = os.path.join(root, subset, "mix")
    names = sorted(f[:-4] for f in os.listdir(mix_dir) if f.endswith(".wav"))
    if not names:
        raise ValueError(f"no mixture .wav files in {mix_dir}")
    mixtures = []
    for name in names:
        fields = parse_name(name, layout)
        if fields is None:
            raise ValueError(
                f"cannot parse WSJ0-2mix mixture name: {os.path.join(mix_dir, name)}.wav"
            )
        entry = dict(
            fields, name=name, wav={"mix": os.path.join(mix_dir, name + ".wav")}
        )
        for source in sources:
            path = os.path.join(root, subset, source, name + ".wav")
            if not os.path.isfile(path):
                raise ValueError(
                    f"missing {source} partner of {entry['wav']['mix']}: {path}"
                )
            entry["wav"][source] = path
        mixtures.append(entry)
    return mixtures


def _extr_rows(mixtures):
    rows, dropped = [], 0
    for m in mixtures:
        spk = speaker_of(m["utt1"])
        if speaker_of(m["aux"]) != spk:
            dropped += 1
            continue
        wav = m["wav"]
        duration = round(_duration(wav["mix"]), 5)
        rows.append(
            [
                m["name"],
                duration,
                wav["mix"],
                wav["s1"],
                wav["aux"],
                spk,
                m["utt1"],
                m["aux"],
            ]
        )
    return rows, dropped


def _plain_rows(mixtures, seed):
    by_spk = {}  # speaker -> [(utt, path, mixture name)], the clean sources of the subset
    for m in mixtures:
        for source, utt in (("s1", m["utt1"]), ("s2", m["utt2"])):
            by_spk.setdefault(speaker_of(utt), []).append(
                (utt, m["wav"][source], m["name"])
            )
    for entries in by_spk.values():
        entries.sort(key=lambda e: e[1])
    rows, dropped = [], 0
    for m in mixtures:
        wav = m["wav"]
        duration = round(_duration(wav["mix"]), 5)
        for source, utt in (("s1", m["utt1"]), ("s2", m["utt2"])):
            spk = speaker_of(utt)
            candidates = [
                e for e in by_spk[spk] if e[2] != m["name"] and e[0] != utt
            ]
            if not candidates:
                dropped += 1
                continue
            rng = random.Random(f"{seed}:{m['name']}:{source}")
            enroll_utt, enroll_wav, _ = rng.choice(candidates)
            row_id = f"{m['name']}_{source}"
            rows.append(
                [
                    row_id,
                    duration,
                    wav["mix"],
                    wav[source],
                    enroll_wav,
                    spk,
                    utt,
                    enroll_utt,
                ]
            )
    return rows, dropped


def _utt_rows(mixtures, layout):
    """One row per distinct utterance (the longest of its files), sorted by utterance id."""
    second = "aux" if layout == "wsj0_2mix_extr" else "utt2"
    second_source = "aux" if layout == "wsj0_2mix_extr" else "s2"
    best = {}  # utt -> (duration, path)
    for m in mixtures:
        for utt, path in (
            (m["utt1"], m["wav"]["s1"]),
            (m[second], m["wav"][second_source]),
        ):
            duration = _duration(path)
            if utt not in best or duration > best[utt][0]:
                best[utt] = (duration, path)
    return [
        [utt, round(d, 5), path, speaker_of(utt)]
        for utt, (d, path) in sorted(best.items())
    ]


def _write_csv(path, header, rows):
    """Writes a CSV atomically (a temporary file renamed over ``path``)."""
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


def _read_options(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def prepare_wsj0mix_tse(data_folder, save_folder, version="wav8k/min", seed=1):
    """Writes the TSE CSVs of WSJ0-2mix or WSJ0-2mix-extr (see the module docstring).

    Arguments
    ---------
    data_folder : str
        Folder holding ``wsj0_2mix_extr`` and/or ``2speakers`` (extr is preferred), or one of
        these folders itself.
    save_folder : str
        Where the CSVs and the options file are written (created if needed).
    version : str
        Sampling rate and mode folder, e.g. ``wav8k/min``, ``wav8k/max``, ``wav16k/min``.
    seed : int
        Seed of the enrollment draws on plain WSJ0-2mix (unused by the extr layout's rows).

    Returns
    -------
    dict
        Absolute CSV paths: ``train``, ``train_utts``, ``valid``, ``test`` (``tr``, ``tr``
        utterances, ``cv``, ``tt``).

    Raises
    ------
    FileNotFoundError
        No layout under ``data_folder``.
    ValueError
        A mixture name that does not parse, or a mixture without a source partner.

    Example
    -------
    >>> prepare_wsj0mix_tse(
    ...     "/no/such/folder", "/tmp/unused"
    ... )  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: no WSJ0-2mix data in /no/such/folder: looked for ...
    """
    layout, root = find_layout(data_folder, version)
    save_folder = os.path.abspath(save_folder)
    os.makedirs(save_folder, exist_ok=True)
    paths = {
        key: os.path.join(save_folder, f"wsj0mix_tse_{s}.csv")
        for key, s in SUBSETS.items()
    }
    paths["train_utts"] = os.path.join(save_folder, "wsj0mix_tse_tr_utts.csv")
    options = {
        "data_folder": os.path.abspath(data_folder),
        "version": version,
        "seed": seed,
        "layout": layout,
        "layout_root": root,
    }
    options_path = os.path.join(save_folder, OPTIONS_FILE)
    if _read_options(options_path) == options and all(
        os.path.isfile(p) for p in paths.values()
    ):
        logger.info(
            "WSJ0-2mix TSE CSVs already prepared in %s, skipping", save_folder
        )
        return paths

    logger.info(
        "Preparing WSJ0-2mix TSE CSVs from %s (layout %s)", root, layout
    )
    if layout == "wsj0_2mix":
        logger.warning(
            "Plain WSJ0-2mix: enrollments are seeded draws (seed %s) of other utterances of the "
            "target speaker, not WSJ0-2mix-extr's protocol; results are not comparable to SpEx's",
            seed,
        )
    if os.path.exists(options_path):
        os.remove(
            options_path
        )  # a run stopped midway must not look complete later
    for key, subset in SUBSETS.items():
        mixtures = _list_subset(root, subset, layout)
        if layout == "wsj0_2mix_extr":
            rows, dropped = _extr_rows(mixtures)
            why = "mixtures whose aux speaker is not the target speaker"
        else:
            rows, dropped = _plain_rows(mixtures, seed)
            why = "(mixture, target) rows: no other utterance of the target speaker to enroll"
        if dropped:
            logger.warning("%s: dropped %d %s", subset, dropped, why)
        _write_csv(paths[key], MIX_HEADER, rows)
        logger.info(
            "%s: %d rows from %d mixtures -> %s",
            subset,
            len(rows),
            len(mixtures),
            paths[key],
        )
        if subset == "tr":
            utts = _utt_rows(mixtures, layout)
            _write_csv(paths["train_utts"], UTT_HEADER, utts)
            logger.info(
                "tr: %d distinct utterances -> %s",
                len(utts),
                paths["train_utts"],
            )
    tmp = options_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(options, f, indent=1, sort_keys=True)
    os.replace(tmp, options_path)
    return paths
