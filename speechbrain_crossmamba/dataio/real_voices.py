"""RealVoices: a corpus of real recorded speech from installed Debian packages.

The recordings of :mod:`~speechbrain_crossmamba.dataio.voice_packages` are read in place,
resampled to 8 kHz, cut at pauses into utterances of ``min_seconds``..``max_seconds``, trimmed
of leading and trailing silence and normalised to one speech level. Speakers are assigned to
splits by name (``valid_speakers``, ``test_speakers``; all others train), so no speaker
crosses splits. Valid and test get fixed two-speaker mixture lists in SynthSpeakers' format,
so the training recipe, the benchmark and ``tse_data.mixture_dataset`` read them alike.

The default test speakers are the benchmark's (``benchmarks/real_voices.py``): both Czech
Fish Fillets voices and two Drascula characters. The default valid speakers, disjoint from
both, choose the checkpoint and drive the learning-rate schedule: both Dutch Fish Fillets
voices and three other Drascula characters. The telephony prompts ``asterisk-core-sounds-*``
are reserved for an independent evaluation and never read here.

Reproducible: the corpus folder ``<data_folder>/RealVoices_<config hash>`` holds a
``manifest.json`` with the config, every source's package and version, the speakers of each
split with their minutes, and a digest of all WAVs; the same config and package versions give
the same files. A source whose package is not installed is reported in one log line naming
the package and ``tools/install_voices.sh``; the corpus is built from the rest.

The corpus is cut and written by :mod:`.real_voices_build` (re-exported here); this module
finds the installed sources, prepares the corpus once, and combines it with SynthSpeakers.

Authors
 * speechbrain-crossmamba contributors
"""

import hashlib
import json
import logging
import os
import shutil

from speechbrain_crossmamba.dataio import synth_speakers as synth
from speechbrain_crossmamba.dataio.real_voices_build import (  # noqa: F401
    FORMAT_VERSION,
    FRAME_S,
    INSTALL_HINT,
    LEVEL_RMS,
    PEAK,
    _build,
    cut_utterances,
    normalise,
)
from speechbrain_crossmamba.dataio.voice_packages import (
    SOURCES,
    SPEAKER_TABLES,
    package_version,
)

logger = logging.getLogger(__name__)

TEST_SPEAKERS = (
    "fillets_cs_small",
    "fillets_cs_big",
    "drascula_vonbraun",
    "drascula_bj",
)
VALID_SPEAKERS = (
    "fillets_nl_small",
    "fillets_nl_big",
    "drascula_igor",
    "drascula_bartender",
    "drascula_werewolf",
)


def installed_version(source):
    """The Debian version of ``source``'s package; ``unknown`` where its files are there
    without dpkg knowing them (a copy); None where neither. A source whose speakers come from a
    table of this project (``SPEAKER_TABLES``) adds the table's digest.

    Arguments
    ---------
    source : str
        A key of ``SOURCES`` (a ``ValueError`` otherwise).

    Returns
    -------
    str or None
        The version.
    """
    if source not in SOURCES:
        raise ValueError(
            f"unknown real-voice source {source!r}; known: {', '.join(SOURCES)}"
        )
    version = package_version(SOURCES[source][0])
    if version is None and SOURCES[source][3]():
        version = "unknown"
    if (
        version is not None and source in SPEAKER_TABLES
    ):  # a new table, a new corpus
        with open(SPEAKER_TABLES[source], "rb") as f:
            version += "+speakers." + hashlib.sha256(f.read()).hexdigest()[:8]
    return version


def available_sources(sources):
    """``{source: package version}`` of the sources whose package is installed; logs one
    line for each that is not.

    Arguments
    ---------
    sources : iterable of str
        Keys of ``SOURCES``.

    Returns
    -------
    dict
        ``source -> version`` (see :func:`installed_version`).
    """
    found = {}
    for source in sources:
        version = installed_version(source)
        if version is None:
            logger.warning(
                "RealVoices: %s is not installed, skipped (install: %s)",
                SOURCES[source][0],
                INSTALL_HINT,
            )
        else:
            found[source] = version
    return found


def prepare_real_voices(
    data_folder,
    sources=tuple(SOURCES),
    seed=1234,
    valid_speakers=VALID_SPEAKERS,
    test_speakers=TEST_SPEAKERS,
    n_valid_mixtures=100,
    n_test_mixtures=200,
    sample_rate=8000,
    snr_range=(-5.0, 5.0),
    min_seconds=1.5,
    max_seconds=8.0,
    max_utterances_per_speaker=200,
    min_utterances_per_speaker=8,
):
    """Makes (once) the RealVoices corpus from the installed packages; returns its CSV paths.

    Arguments
    ---------
    data_folder : str
        Where the corpus folder is made.
    sources : sequence of str
        Sources of :data:`~speechbrain_crossmamba.dataio.voice_packages.SOURCES` to read.
    seed : int
        Seed of the utterance choice and the valid/test mixtures.
    valid_speakers, test_speakers : sequence of str
        Speaker IDs of the valid and test splits; every other speaker trains.
    n_valid_mixtures, n_test_mixtures : int
        Fixed two-speaker mixtures of the valid and test speakers.
    sample_rate : int
        Output rate.
    snr_range : (float, float)
        Target-to-interferer ratio of the fixed mixtures, in dB.
    min_seconds, max_seconds : float
        Utterance lengths after cutting at pauses.
    max_utterances_per_speaker, min_utterances_per_speaker : int
        At most this many utterances of a speaker (drawn at random with ``seed``, so that a
        few long-talking characters do not dominate); speakers with fewer than the minimum
        are left out.

    Returns
    -------
    dict
        Absolute paths ``train_utts``, ``valid_utts``, ``test_utts``, ``valid``, ``test``,
        and ``manifest``.

    Example
    -------
    >>> prepare_real_voices("/tmp", sources=["no_such_source"])
    Traceback (most recent call last):
    ...
    ValueError: unknown real-voice source 'no_such_source'; known: fillets_cs, fillets_nl, drascula, fotaq, uqm, klettres, ktuberling, bass
    """
    config = {
        "format": FORMAT_VERSION,
        "seed": int(seed),
        "sample_rate": int(sample_rate),
        "snr_range": [float(x) for x in snr_range],
        "valid_speakers": sorted(valid_speakers),
        "test_speakers": sorted(test_speakers),
        "n_valid_mixtures": int(n_valid_mixtures),
        "n_test_mixtures": int(n_test_mixtures),
        "min_seconds": float(min_seconds),
        "max_seconds": float(max_seconds),
        "sources": sorted(sources),
        "max_utterances_per_speaker": int(max_utterances_per_speaker),
        "min_utterances_per_speaker": int(min_utterances_per_speaker),
    }
    if set(valid_speakers) & set(test_speakers):
        raise ValueError("valid_speakers and test_speakers must be disjoint")
    versions = available_sources(sources)
    if not versions:
        raise RuntimeError(
            f"RealVoices: none of the packages is installed; install: {INSTALL_HINT}"
        )
    key_data = dict(config, versions=versions)
    key = hashlib.sha256(
        json.dumps(key_data, sort_keys=True).encode()
    ).hexdigest()[:8]
    root = os.path.join(os.path.abspath(data_folder), f"RealVoices_{key}")
    paths = {
        f"{s}_utts": os.path.join(root, f"{s}_utts.csv") for s in synth.SPLITS
    }
    paths.update(
        valid=os.path.join(root, "valid.csv"),
        test=os.path.join(root, "test.csv"),
        manifest=os.path.join(root, "manifest.json"),
    )
    manifest = synth._read_manifest(root)
    if manifest is not None and all(os.path.isfile(p) for p in paths.values()):
        if manifest["root"] != root:
            synth._relocate(root, manifest)
        return paths
    shutil.rmtree(
        root, ignore_errors=True
    )  # an incomplete corpus (killed run) is rebuilt
    _build(config, versions, root)
    return paths


def _has_real_voices(sources):
    return any(installed_version(s) is not None for s in sources)


def prepare_tse_speakers(
    data_folder, synth, real, train_voices=("espeak",), eval_voices="espeak"
):
    """The speaker corpus of a recipe: SynthSpeakers (eSpeak NG), RealVoices, or both.

    Arguments
    ---------
    data_folder : str
        Where the combined training list is written (beside the corpora).
    synth : callable
        Makes SynthSpeakers, e.g. ``prepare_synth_speakers`` with the recipe's arguments.
    real : callable
        Makes RealVoices, e.g. :func:`prepare_real_voices` with the recipe's arguments; it
        has a ``sources`` keyword (the voices it reads) when given as a ``functools.partial``.
    train_voices : sequence of str, or "auto"
        ``espeak`` and/or ``real``: the training speakers are the union. ``auto``: both when
        a real-voice package is installed, else ``espeak``.
    eval_voices : str
        ``espeak`` or ``real``: whose held-out speakers the valid and test mixtures are.
        ``auto``: ``real`` when a real-voice package is installed.

    Returns
    -------
    dict
        ``train_utts`` (the union), and ``valid``, ``test``, ``valid_utts``, ``test_utts`` of
        the evaluation corpus.

    Example
    -------
    >>> prepare_tse_speakers(
    ...     "/tmp", None, None, train_voices=["espeak", "klingon"]
    ... )
    Traceback (most recent call last):
    ...
    ValueError: train_voices must be among espeak, real (or auto); got ['espeak', 'klingon']
    """
    sources = getattr(real, "keywords", {}).get("sources", tuple(SOURCES))
    installed = None
    if train_voices == "auto" or eval_voices == "auto":
        installed = _has_real_voices(sources)
    if train_voices == "auto":
        train_voices = ["espeak", "real"] if installed else ["espeak"]
    if eval_voices == "auto":
        eval_voices = "real" if installed else "espeak"
    train_voices = list(train_voices)
    if not train_voices or set(train_voices) - {"espeak", "real"}:
        raise ValueError(
            f"train_voices must be among espeak, real (or auto); got {train_voices}"
        )
    if eval_voices not in ("espeak", "real"):
        raise ValueError(
            f"eval_voices must be espeak, real or auto; got {eval_voices!r}"
        )
    corpora = {}
    for name in sorted(set(train_voices) | {eval_voices}):
        try:
            corpora[name] = synth() if name == "espeak" else real()
        except (
            RuntimeError
        ) as error:  # e.g. no real-voice package installed: one line
            raise ValueError(str(error)) from None
    if len(train_voices) == 1:
        train_csv = corpora[train_voices[0]]["train_utts"]
    else:  # the union, rewritten on every call (cheap) next to the corpora
        lines = []
        for name in sorted(train_voices):
            with open(corpora[name]["train_utts"]) as f:
                rows = f.read().splitlines()
            lines += rows if not lines else rows[1:]
        train_csv = os.path.join(
            os.path.abspath(data_folder),
            "train_utts_" + "_".join(sorted(train_voices)) + ".csv",
        )
        with open(train_csv + ".tmp", "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(train_csv + ".tmp", train_csv)
    paths = {
        k: corpora[eval_voices][k]
        for k in ("valid", "test", "valid_utts", "test_utts")
    }
    logger.info(
        "speakers: train %s, valid/test %s", "+".join(train_voices), eval_voices
    )
    return dict(paths, train_utts=train_csv)
