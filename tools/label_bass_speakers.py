"""Speaker IDs for Beneath a Steel Sky's speech lines, by clustering speaker embeddings.

The game does not say who speaks a line, so every line of 1 s or more is embedded with
Resemblyzer's pretrained GE2E speaker encoder (the 3-layer LSTM of ``pretrained.pt`` in the
``resemblyzer`` 0.1.4 wheel, Apache-2.0; only its weights are used, with our own front end:
40 Slaney mel bands from torchaudio, the level set to -30 dBFS, partial utterances of 1.6 s
about 1.3 a second, without Resemblyzer's voice-activity trimming) and the lines are
clustered by average linkage on cosine distance. Clusters of ``--min-lines`` lines and
``--min-minutes`` minutes or more become speaker IDs ``bass_s01``, ``bass_s02``, ... (largest
first), written to ``speechbrain_crossmamba/dataio/bass_speakers.json``. ``--calibrate`` runs
the same clustering on clips of the labelled real speakers of the other sources and prints
how pure its clusters are.

Get the weights without installing Resemblyzer (it pulls librosa and webrtcvad)::

    pip download resemblyzer==0.1.4 --no-deps -d /tmp/resemblyzer
    unzip -o /tmp/resemblyzer/*.whl 'resemblyzer/pretrained.pt' -d /tmp/resemblyzer
    python tools/label_bass_speakers.py --weights /tmp/resemblyzer/resemblyzer/pretrained.pt

Authors
 * speechbrain-crossmamba contributors
"""

import argparse
import collections
import hashlib
import json
import math
import random

import numpy as np
import torch
import torchaudio
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist

from speechbrain_crossmamba.dataio import voice_bass
from speechbrain_crossmamba.dataio.voice_packages import (
    SOURCES,
    package_version,
)

RATE = 16000  # Resemblyzer's rate; 40 mel bands, 25 ms windows, 10 ms hop
PARTIAL = 160  # frames in one partial utterance (1.6 s)


class SpeakerEncoder(torch.nn.Module):
    """Resemblyzer's encoder: LSTM(40, 256, 3 layers), linear, ReLU, unit norm."""

    def __init__(self, weights):
        super().__init__()
        self.lstm = torch.nn.LSTM(40, 256, 3, batch_first=True)
        self.linear = torch.nn.Linear(256, 256)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        state = state.get("model_state", state)
        self.load_state_dict(
            {
                k: v
                for k, v in state.items()
                if k.split(".")[0] in ("lstm", "linear")
            }
        )
        self.eval()
        self.mel = torchaudio.transforms.MelSpectrogram(
            RATE,
            n_fft=400,
            hop_length=160,
            n_mels=40,
            norm="slaney",
            mel_scale="slaney",
        )

    @torch.no_grad()
    def embed(self, wav, rate):
        """One unit embedding: the mean of partial utterances 1.6 s long, ~1.3 a second."""
        wav = torchaudio.functional.resample(
            torch.as_tensor(wav, dtype=torch.float32), rate, RATE
        )
        wav = wav / (wav.pow(2).mean().sqrt() + 1e-8) * 10 ** (-30 / 20)
        mels = self.mel(wav).T
        if len(mels) < PARTIAL:
            mels = torch.nn.functional.pad(mels, (0, 0, 0, PARTIAL - len(mels)))
        step = round(RATE / 1.3 / 160)
        parts = torch.stack(
            [
                mels[s : s + PARTIAL]
                for s in range(0, len(mels) - PARTIAL + 1, step)
            ]
        )
        _, (hidden, _) = self.lstm(parts)
        embeds = torch.relu(self.linear(hidden[-1]))
        embeds = embeds / embeds.norm(dim=1, keepdim=True)
        mean = embeds.mean(0)
        return (mean / mean.norm()).numpy()


def clusters(embeddings, distance):
    """Average-linkage clusters at a cosine distance: one label per row."""
    return fcluster(
        linkage(pdist(embeddings, "cosine"), "average"), distance, "distance"
    )


def adjusted_rand(a, b):
    """The adjusted Rand index of two labellings (1.0 where both put everything together).

    Example
    -------
    >>> adjusted_rand([1, 1, 2, 2], [5, 5, 7, 7])
    1.0
    >>> round(adjusted_rand([1, 1, 2, 2], [5, 7, 5, 7]), 6)
    -0.5
    """
    pairs = sum(
        math.comb(v, 2) for v in collections.Counter(zip(a, b)).values()
    )
    sa = sum(math.comb(v, 2) for v in collections.Counter(a).values())
    sb = sum(math.comb(v, 2) for v in collections.Counter(b).values())
    expected = sa * sb / math.comb(len(a), 2)
    if (sa + sb) / 2 == expected:
        return 1.0
    return (pairs - expected) / ((sa + sb) / 2 - expected)


def calibrate(encoder, distance, per_speaker=30, seed=0):
    """Prints the clusters, purity and adjusted Rand index of the clustering on up to
    ``per_speaker`` clips (their first 4 s, 0.5 s or more) of each labelled real speaker of
    uqm, Drascula and both Fish Fillets dubs: BASS's lines are 1-6 s long."""
    rng = random.Random(seed)
    labels, embeddings = [], []
    for source in ("uqm", "drascula", "fillets_cs", "fillets_nl"):
        by_speaker = collections.defaultdict(list)
        for speaker, _, load in SOURCES[source][3]():
            by_speaker[speaker].append(load)
        for speaker, loads in sorted(by_speaker.items()):
            for load in rng.sample(loads, min(per_speaker, len(loads))):
                wav, rate = load()
                wav = wav[: 4 * rate]
                if len(wav) >= rate // 2:
                    labels.append(speaker)
                    embeddings.append(encoder.embed(wav, rate))
    found = clusters(np.array(embeddings), distance)
    pure = sum(
        max(
            collections.Counter(
                lab for lab, c in zip(labels, found) if c == k
            ).values()
        )
        for k in set(found)
    )
    print(
        f"calibration: {len(labels)} clips of {len(set(labels))} speakers -> "
        f"{len(set(found))} clusters, purity {pure / len(labels):.3f}, "
        f"adjusted Rand index {adjusted_rand(labels, list(found)):.3f}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--weights", required=True, help="Resemblyzer's pretrained.pt"
    )
    parser.add_argument("--distance", type=float, default=0.25)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--min-lines", type=int, default=20)
    parser.add_argument("--min-minutes", type=float, default=1.0)
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--out", default=voice_bass.BASS_SPEAKERS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    encoder = SpeakerEncoder(args.weights)
    if args.calibrate:
        calibrate(encoder, args.distance)
        return
    lines = voice_bass.speech_lines()
    if not lines:
        raise SystemExit(
            "Beneath a Steel Sky is not installed (sudo bash tools/install_voices.sh)"
        )
    numbers, embeddings, seconds = [], [], []
    for number, load in lines:
        wav, rate = load()
        if len(wav) >= args.min_seconds * rate:
            numbers.append(number)
            seconds.append(len(wav) / rate)
            embeddings.append(encoder.embed(wav, rate))
    found = clusters(np.array(embeddings), args.distance)
    members = collections.defaultdict(list)
    for number, c, s in zip(numbers, found, seconds):
        members[c].append((number, s))
    kept = [
        m
        for m in members.values()
        if len(m) >= args.min_lines
        and sum(s for _, s in m) >= 60 * args.min_minutes
    ]
    kept.sort(key=lambda m: -sum(s for _, s in m))
    with open(args.weights, "rb") as f:
        weights_sha = hashlib.sha256(f.read()).hexdigest()
    table = {
        "package": f"beneath-a-steel-sky {package_version('beneath-a-steel-sky')}",
        "encoder": f"resemblyzer 0.1.4 pretrained.pt sha256 {weights_sha}",
        "clustering": vars(args) | {"weights": None, "out": None},
        "speakers": {
            f"bass_s{i + 1:02d}": sorted(n for n, _ in m)
            for i, m in enumerate(kept)
        },
    }
    with open(args.out, "w") as f:
        json.dump(table, f, indent=0)
    minutes = sum(s for m in kept for _, s in m) / 60
    print(
        f"{len(numbers)} lines of {args.min_seconds} s or more -> {len(members)} clusters; "
        f"kept {len(kept)} speakers, {minutes:.1f} min -> {args.out}"
    )


if __name__ == "__main__":
    main()
