"""``benchmarks/paper_table.py``: a smoke run with a tiny budget, and the metrics it reports
checked against hand-computed values."""

import json
import math
import os
import subprocess
import sys

import torch

from speechbrain_crossmamba.evaluation import si_snr, utterance_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from paper_table import mean_ci  # noqa: E402  (benchmarks/ is not a package)
from test_training import TINY_MODEL, TINY_SPEAKERS  # noqa: E402


def test_si_snr_of_a_scaled_copy_is_very_large():
    target = torch.randn(1, 8000, generator=torch.Generator().manual_seed(0))
    assert si_snr(0.3 * target, target).item() > 80.0


def test_si_snr_with_orthogonal_noise_matches_the_closed_form():
    g = torch.Generator().manual_seed(1)
    target, noise = torch.randn(8000, generator=g), torch.randn(8000, generator=g)
    target, noise = target - target.mean(), noise - noise.mean()
    noise = noise - (noise @ target) / (target @ target) * target  # orthogonal to the target
    noise = noise * 0.5 * target.norm() / noise.norm()  # -> ||t||^2 / ||n||^2 = 4
    expected = 10 * math.log10(4.0)
    assert abs(si_snr((target + noise)[None], target[None]).item() - expected) < 1e-3


def test_improvements_are_zero_for_the_mixture_itself():
    g = torch.Generator().manual_seed(2)
    target = torch.randn(8000, generator=g)
    mixture = target + torch.randn(8000, generator=g)
    metrics = utterance_metrics(mixture, target, mixture)
    assert abs(metrics["sdri"]) < 1e-6 and abs(metrics["si-snri"]) < 1e-6


def test_mean_ci_by_hand():
    mean, half = mean_ci([1.0, 2.0, 3.0, 6.0])
    sd = math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + 0 + (6 - 3) ** 2) / 3)
    assert mean == 3.0 and abs(half - 1.96 * sd / 2) < 1e-12


def test_smoke_two_variants_one_length(tmp_path):
    out = tmp_path / "docs"
    cmd = [
        sys.executable, os.path.join(ROOT, "benchmarks", "paper_table.py"), "--budget=0.05",
        "--variants", "CrossMamba-TSE", "Transformer-TSE", "--tasks", "speakers", "--lengths", "1",
        "--fusion-lengths", "50", "--reps=1", "--epoch-size=4", "--n-valid=2", "--n-test=3",
        f"--data={tmp_path / 'data'}", f"--work={tmp_path / 'runs'}", f"--out={out}",
        TINY_MODEL, *[a for a in TINY_SPEAKERS if "mixtures" not in a], "--segment_seconds=1.0", "--enroll_seconds=1.0", "--batch_size=2",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {"results.md", "results.json", "quality.png", "time.png", "memory.png"} <= set(os.listdir(out))
    report = open(out / "results.md").read()
    header = "| task | variant | SI-SNRi (dB) | SDRi (dB) | epochs | mixtures seen | params (M) | GMACs / s audio |"
    assert header in report
    quality = [line for line in report.splitlines() if line.startswith("| speakers |")]
    assert [line.split("|")[2].strip() for line in quality] == ["CrossMamba-TSE", "Transformer-TSE"]
    results = json.load(open(out / "results.json"))
    assert [(c["variant"], c["seconds"]) for c in results["speed"]] == [("CrossMamba-TSE", 1), ("Transformer-TSE", 1)]
    assert results["speed"][1]["vs_baseline"] == 1.0  # the Transformer against itself
    assert all(r["n_test"] == 3 and r["gmacs_per_s"] > 0 for r in results["quality"])
    assert "| CrossMamba time slope" not in report  # one length: no slope to fit
