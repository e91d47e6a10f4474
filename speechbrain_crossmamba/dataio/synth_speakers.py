"""SynthSpeakers: the offline default corpus for target-speaker extraction.

Synthetic speakers are made with eSpeak NG (:mod:`speechbrain_crossmamba.dataio.espeak`).
Each speaker is a seeded combination of an English accent, a shipped ``!v`` voice variant, a
pitch base and range, a speaking rate, and a formant scale (vocal-tract length); these are
written as a generated voice file into a private overlay of eSpeak's data folder. Sentences of
5-12 words come from the shipped ``words.txt``. Audio is trimmed, resampled to 8 kHz,
peak-normalised, dithered and written as 16-bit WAVs; fixed two-speaker valid/test mixture
lists ("min" mode, like Libri2Mix wav8k/min) are written too.

Reproducibility: eSpeak's output depends on its call history, so the whole corpus is made in
one fresh subprocess (``python -m speechbrain_crossmamba.dataio.synth_speakers``) in a fixed
order, with eSpeak's own random generator (breath noise) reseeded for every utterance; the
same config gives bit-identical WAVs. The corpus is built in ``<folder>.partial``
and renamed when complete, with a ``manifest.json`` holding the config and a digest of all
WAVs. The folder is ``<data_folder>/SynthSpeakers_seed<seed>_<config hash>``: another config
gets its own folder, a repeated call returns at once, and a left-over ``.partial`` (a killed
run) is deleted and regenerated. CSVs hold absolute paths, rewritten when a complete corpus
is found moved. Call it on the main process only (``run_on_main``).

The speakers and their utterances are made by :mod:`.synth_voices` (re-exported here); this
module writes the mixture lists and the corpus folder, and runs the generation process.

Authors
 * speechbrain-crossmamba contributors
"""

import argparse
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np

from speechbrain_crossmamba.dataio.mix_signals import colored_noise, mix_at_snr
from speechbrain_crossmamba.dataio.synth_voices import (  # noqa: F401
    ACCENTS,
    DITHER,
    ESPEAK_RATE,
    LEVEL,
    PITCH_BASE_HZ,
    SPLITS,
    TRIM_MARGIN_S,
    VARIANTS,
    _synthesise_all,
    _write_wav,
    make_sentence,
    process_audio,
    speaker_params,
)

FORMAT_VERSION = 1
MODULE = "speechbrain_crossmamba.dataio.synth_speakers"
MIX_PEAK = 0.9
NOISE_DB = (-30.0, -20.0)  # noise level relative to the speech mixture


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _draw_mixture(rng, by_spk):
    """(target speaker, target, interferer, enrollment); entries are ``(utt_id, path)``."""
    speakers = sorted(by_spk)
    spk = speakers[int(rng.integers(len(speakers)))]
    others = [s for s in speakers if s != spk]
    other = by_spk[others[int(rng.integers(len(others)))]]
    utts = by_spk[spk]
    t = int(rng.integers(len(utts)))
    e = [i for i in range(len(utts)) if i != t][
        int(rng.integers(len(utts) - 1))
    ]
    return spk, utts[t], other[int(rng.integers(len(other)))], utts[e]


def _mixtures(config, split, rows, audio, partial, final):
    """Writes the fixed mixture list of ``split``; returns its CSV rows."""
    sr, by_spk, out = config["sample_rate"], {}, []
    for utt, _, path, spk in rows:
        by_spk.setdefault(spk, []).append((utt, path))
    for m in range(config[f"n_{split}_mixtures"]):
        rng = np.random.default_rng(
            (14, config["seed"], SPLITS.index(split), m)
        )
        spk, target, interf, enroll = _draw_mixture(rng, by_spk)
        snr = float(rng.uniform(*config["snr_range"]))
        noise_db, color = (
            float(rng.uniform(*NOISE_DB)),
            ("white", "pink")[int(rng.integers(2))],
        )
        n = min(len(audio[target[0]]), len(audio[interf[0]]))
        noise = colored_noise(n, rng, color) if config["noise"] else None
        noise_db = noise_db if config["noise"] else None
        t_wav, i_wav = audio[target[0]][:n], audio[interf[0]][:n]
        mix, tgt = mix_at_snr(t_wav, i_wav, snr, noise, noise_db, peak=MIX_PEAK)
        mid = f"{split}_{m:04d}"
        rels = [
            os.path.join("mixtures", split, kind, mid + ".wav")
            for kind in ("mix", "target")
        ]
        for rel, wav in zip(rels, (mix, tgt)):
            _write_wav(os.path.join(partial, rel), wav, sr)
        paths = [os.path.join(final, rel) for rel in rels]
        out.append(
            [
                mid,
                f"{n / sr:.4f}",
                *paths,
                enroll[1],
                interf[1],
                spk,
                f"{snr:.3f}",
            ]
        )
    return out


UTT_HEADER = ["ID", "duration", "wav", "spk_id"]
# the first five columns are what training reads, as in the real-data recipes
TRAIN_COLUMNS = ["ID", "duration", "mix_wav", "target_wav", "enroll_wav"]
MIX_HEADER = TRAIN_COLUMNS + ["interf_wav", "target_spk", "snr_db"]


def _digest(folder):
    """SHA-256 over the relative paths and bytes of all WAVs under ``folder``."""
    total = hashlib.sha256()
    for dirpath, dirnames, files in sorted(os.walk(folder)):
        dirnames.sort()
        for name in sorted(f for f in files if f.endswith(".wav")):
            path = os.path.join(dirpath, name)
            total.update(
                os.path.relpath(path, folder).replace(os.sep, "/").encode()
            )
            with open(path, "rb") as f:
                total.update(hashlib.sha256(f.read()).digest())
    return total.hexdigest()


def _generate(config, final):
    """Builds the whole corpus in ``<final>.partial`` and renames it to ``final``.

    Runs in a fresh process (see :func:`prepare_synth_speakers`); calling it in a process that
    already synthesised breaks bit-exact reproducibility.
    """
    partial = final + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    rows, audio, info = _synthesise_all(config, partial, final)
    for split in SPLITS:
        _write_csv(
            os.path.join(partial, f"{split}_utts.csv"), UTT_HEADER, rows[split]
        )
    for split in ("valid", "test"):
        mixes = _mixtures(config, split, rows[split], audio, partial, final)
        _write_csv(os.path.join(partial, f"{split}.csv"), MIX_HEADER, mixes)
    with open(os.path.join(partial, "speakers.json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
    n_files = sum(len(f) for _, _, f in os.walk(partial))
    seconds = sum(float(r[1]) for split in SPLITS for r in rows[split])
    manifest = {
        "format": FORMAT_VERSION,
        "config": config,
        "root": final,
        "digest": _digest(partial),
        "n_files": n_files + 1,
        "utterance_hours": round(seconds / 3600, 4),
        "espeak_version": info["espeak_version"],
    }
    with open(os.path.join(partial, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    os.replace(partial, final)


def _config(seed, sample_rate, snr_range, noise, **counts):
    config = {
        "format": FORMAT_VERSION,
        "seed": int(seed),
        "sample_rate": int(sample_rate),
        "snr_range": [float(snr_range[0]), float(snr_range[1])],
        "noise": bool(noise),
    }
    config.update({k: int(v) for k, v in counts.items()})
    if config["utterances_per_speaker"] < 2:
        raise ValueError(
            "utterances_per_speaker must be at least 2 (enrollment != target)"
        )
    for split in SPLITS:
        if config[f"n_{split}_speakers"] < 2:
            raise ValueError(
                f"n_{split}_speakers must be at least 2 (target and interferer)"
            )
    return config


def _relocate(root, manifest):
    """Rewrites the CSV paths when the corpus folder was moved since generation."""
    old = manifest["root"]
    for name in [f"{s}_utts.csv" for s in SPLITS] + ["valid.csv", "test.csv"]:
        path = os.path.join(root, name)
        with open(path) as f:
            text = f.read().replace(old + os.sep, root + os.sep)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    manifest["root"] = root
    with open(os.path.join(root, "manifest.json.tmp"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    os.replace(
        os.path.join(root, "manifest.json.tmp"),
        os.path.join(root, "manifest.json"),
    )


def _read_manifest(root):
    try:
        with open(os.path.join(root, "manifest.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _run_worker(config, root):
    """Generates the corpus in one fresh Python process (bit-exact eSpeak output)."""
    shutil.rmtree(root + ".partial", ignore_errors=True)
    package_parent = os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    )
    python_path = [package_parent] + [
        p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(python_path))
    cmd = [sys.executable, "-m", MODULE, "--worker", json.dumps(config), root]
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(
            f"SynthSpeakers generation failed (exit {proc.returncode}): {last}"
        )


def prepare_synth_speakers(
    data_folder,
    seed=1234,
    n_train_speakers=64,
    n_valid_speakers=8,
    n_test_speakers=8,
    utterances_per_speaker=24,
    n_valid_mixtures=100,
    n_test_mixtures=200,
    sample_rate=8000,
    snr_range=(-5.0, 5.0),
    noise=True,
):
    """Makes (once) the SynthSpeakers corpus and returns the paths of its CSVs.

    Train, valid and test speakers are disjoint. Utterance CSVs have columns
    ``ID,duration,wav,spk_id``; the fixed valid/test mixture CSVs have
    ``ID,duration,mix_wav,target_wav,enroll_wav,interf_wav,target_spk,snr_db``, where
    ``interf_wav`` and ``enroll_wav`` are source utterances (unscaled) and the mixtures are
    cut to the shorter of target and interferer. The corpus lives in
    ``<data_folder>/SynthSpeakers_seed<seed>_<8 hex digits of the config hash>``.

    Arguments
    ---------
    data_folder : str
        Where the corpus folder is made.
    seed : int
        Seed of speakers, texts, dither and mixtures; the same seed gives identical WAVs.
    n_train_speakers, n_valid_speakers, n_test_speakers : int
        Speakers per split (at least 2 each).
    utterances_per_speaker : int
        Sentences per speaker (at least 2).
    n_valid_mixtures, n_test_mixtures : int
        Fixed two-speaker mixtures of the valid and test speakers.
    sample_rate : int
        Output rate (eSpeak's 22.05 kHz is resampled).
    snr_range : (float, float)
        Uniform range of the target-to-interferer ratio of the mixtures, in dB.
    noise : bool
        Add white or pink noise 20-30 dB below the speech mixture.

    Returns
    -------
    dict
        Absolute paths: ``train_utts``, ``valid_utts``, ``test_utts``, ``valid``, ``test``.

    Example
    -------
    >>> prepare_synth_speakers("/tmp", n_valid_speakers=1)
    Traceback (most recent call last):
    ...
    ValueError: n_valid_speakers must be at least 2 (target and interferer)
    """
    options = dict(locals())
    config = _config(**{k: v for k, v in options.items() if k != "data_folder"})
    key = hashlib.sha256(
        json.dumps(config, sort_keys=True).encode()
    ).hexdigest()[:8]
    root = os.path.join(
        os.path.abspath(data_folder), f"SynthSpeakers_seed{seed}_{key}"
    )
    paths = {f"{s}_utts": os.path.join(root, f"{s}_utts.csv") for s in SPLITS}
    paths.update(
        valid=os.path.join(root, "valid.csv"),
        test=os.path.join(root, "test.csv"),
    )
    manifest = _read_manifest(root)
    if manifest is not None and manifest.get("config") != config:
        raise RuntimeError(
            f"{root} holds SynthSpeakers of another config; delete the folder"
        )
    if manifest is not None and all(os.path.isfile(p) for p in paths.values()):
        if manifest["root"] != root:
            _relocate(root, manifest)
        return paths
    if os.path.exists(root):
        raise RuntimeError(
            f"{root} exists but is no complete SynthSpeakers corpus; delete the folder"
        )
    from speechbrain_crossmamba.dataio.espeak import espeak_paths

    espeak_paths()  # the one-line "needs eSpeak NG" error, before starting a process
    _run_worker(config, root)
    return paths


def main(argv=None):
    """Command line: ``python -m speechbrain_crossmamba.dataio.synth_speakers DATA_FOLDER``.

    Makes the default corpus (``--seed`` to change the seed) and prints the CSV paths.
    The default corpus takes about 20 s; ``tests/test_synth_speakers.py`` runs tiny ones.

    Arguments
    ---------
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(
        description="Make the SynthSpeakers corpus."
    )
    parser.add_argument("data_folder")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument(
        "--worker", metavar="CONFIG_JSON", help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if (
        args.worker
    ):  # internal: one fresh process makes the corpus in DATA_FOLDER (the root)
        _generate(json.loads(args.worker), os.path.abspath(args.data_folder))
    else:
        print(
            json.dumps(
                prepare_synth_speakers(args.data_folder, seed=args.seed),
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
