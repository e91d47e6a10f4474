"""eSpeak NG for SynthSpeakers: the engine, and generated voice files.

The engine, a small ctypes wrapper around the eSpeak NG speech synthesiser (one per process:
:func:`get_engine`; :func:`synthesize`), is in :mod:`.espeak_engine` and re-exported here.
This module holds the voice files: a shipped variant's text (:func:`read_variant`), a
generated variant with its own pitch and formants (:func:`voice_file_text`), and a private
overlay of eSpeak's data folder to write them into (:func:`make_data_overlay`).

eSpeak NG's output depends on the call history; for bit-exact reproducible corpora
synthesise in a fresh process in a fixed order (see
:mod:`speechbrain_crossmamba.dataio.synth_speakers`).

Authors
 * speechbrain-crossmamba contributors
"""

import os
import shutil

from speechbrain_crossmamba.dataio.espeak_engine import (  # noqa: F401
    MISSING_MESSAGE,
    SAMPLE_RATE,
    EspeakEngine,
    EspeakNotAvailable,
    espeak_paths,
    get_engine,
    synthesize,
)


def read_variant(name):
    """The text of a shipped voice variant file (``voices/!v/<name>``).

    Arguments
    ---------
    name : str
        The variant, e.g. ``"m3"`` (a ``ValueError`` when not shipped).

    Returns
    -------
    str
        The file's text.

    Example
    -------
    >>> "formant" in read_variant("m3")
    True
    """
    path = os.path.join(espeak_paths()[1], "voices", "!v", name)
    if not os.path.isfile(path):
        raise ValueError(f"eSpeak NG has no voice variant {name!r}")
    with open(path) as f:
        return f.read()


def voice_file_text(variant_text, name, pitch_hz=None, formant_scale=1.0):
    """A generated voice variant: ``variant_text`` renamed, with a new pitch and scaled formants.

    Formant frequencies (percent of the default) are multiplied by ``formant_scale``, like a
    shorter or longer vocal tract; formants 0-5 missing from the base are added.

    Arguments
    ---------
    variant_text : str
        A voice variant file (e.g. from :func:`read_variant`).
    name : str
        Name written into the file.
    pitch_hz : (int, int), optional
        Pitch base and top in Hz; the base variant's pitch when None.
    formant_scale : float
        Factor on all formant frequencies.

    Returns
    -------
    str
        The text of the new variant file.

    Example
    -------
    >>> base = "name x\\npitch 80 90\\nformant 1 90 100 100\\nflutter 5"
    >>> print(
    ...     voice_file_text(base, "spk", pitch_hz=(100, 150), formant_scale=1.1)
    ... )
    language variant
    name spk
    pitch 100 150
    flutter 5
    formant 1 99 100 100
    formant 0 110 100 100
    formant 2 110 100 100
    formant 3 110 100 100
    formant 4 110 100 100
    formant 5 110 100 100
    """
    dropped = ("name", "language") + (
        ("pitch",) if pitch_hz is not None else ()
    )
    kept, formants = [], {}
    for line in variant_text.splitlines():
        fields = line.split()
        if (
            not fields
            or fields[0].startswith(("//", "#"))
            or fields[0] in dropped
        ):
            continue
        if fields[0] == "formant" and len(fields) >= 5:
            fields[2] = str(round(int(fields[2]) * formant_scale))
            formants[int(fields[1])] = " ".join(fields)
        else:
            kept.append(line.strip())
    for n in range(6):
        formants.setdefault(
            n, f"formant {n} {round(100 * formant_scale)} 100 100"
        )
    head = ["language variant", f"name {name}"]
    if pitch_hz is not None:
        head.append(f"pitch {int(pitch_hz[0])} {int(pitch_hz[1])}")
    return "\n".join(head + kept + list(formants.values()))


def make_data_overlay(folder):
    """Makes ``folder`` a private eSpeak data folder: links to the shipped data (copies where
    links fail) and an empty ``voices/!v`` of its own for generated voice files.

    Use it as ``data_path`` of :func:`get_engine` and select a file ``voices/!v/myvoice``
    written there as ``"en-us+myvoice"``.

    Arguments
    ---------
    folder : str
        The new data folder (created).

    Returns
    -------
    str
        ``folder``.

    Example
    -------
    >>> import tempfile
    >>> overlay = make_data_overlay(
    ...     os.path.join(tempfile.mkdtemp(), "espeak-ng-data")
    ... )
    >>> os.listdir(os.path.join(overlay, "voices", "!v"))
    []
    >>> os.path.exists(os.path.join(overlay, "phontab"))
    True
    """
    source = espeak_paths()[1]
    os.makedirs(os.path.join(folder, "voices", "!v"))
    voices = [
        os.path.join("voices", e)
        for e in os.listdir(os.path.join(source, "voices"))
    ]
    for rel in [e for e in os.listdir(source) if e != "voices"] + voices:
        if rel == os.path.join("voices", "!v"):
            continue
        src, dst = os.path.join(source, rel), os.path.join(folder, rel)
        try:
            os.symlink(src, dst)
        except (
            OSError
        ):  # no symlinks (e.g. Windows without rights): a private copy
            (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, dst)
    return folder
