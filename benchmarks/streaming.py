"""Streaming latency of the causal host: the CrossMamba decoder against causal cross-attention.

Prints markdown tables and writes ``benchmarks/out/streaming.json``. Every figure is measured
in this run; the growth over a stream is given as ratios to the same model's time at its start.

Models (``hparams/models/streaming_tse.yaml``, untrained: the time does not depend on the
weights), at two sizes: ``cpu`` (the SynthEvents YAMLs: 8 kHz, hop 1 ms) and ``fsd`` (the
FSDSoundScapes recipe: 44.1 kHz, hop 0.73 ms, Waveformer's widths). Three decoders:
``crossmamba``; ``attention-1s`` (the YAMLs' 1 s context window); ``attention-all`` (no window:
its key/value cache grows with the stream).

Table 1: each model streams ``--seconds`` of a random mixture in chunks of 8, 16 and 32 ms
through :func:`~speechbrain_crossmamba.inference.streaming.simulate_stream` (arrivals on a
virtual clock, compute measured): per-chunk latency p50 / p95 / max and the real-time factor
(compute / audio; < 1 keeps up).

Table 2: the per-chunk compute time (median of ``--reps`` chunks of 16 ms) at the start of a
stream and after 1 and 5 minutes of it, with the size of the state. The state at t is reached by
streaming t seconds in 2 s chunks (chunk sizes do not change the state). For ``attention-all``
that would cost O(t²) attention, so while it is reached the attention outputs are skipped; its
caches (projected encoder outputs, which never depend on the decoder) are exact.

Usage::

    python benchmarks/streaming.py            # both sizes, 20 s per stream, 1 and 5 min (~8 min)
    python benchmarks/streaming.py --quick    # cpu size, 5 s per stream, 1 min only (~1 min)
"""

import argparse
import contextlib
import json
import os
import platform
import time
from unittest import mock

import numpy as np
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_crossmamba.inference.streaming import latency_stats, simulate_stream
from speechbrain_crossmamba.nnet.streaming import CausalCrossAttentionLayer, state_numel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {
    "cpu": {"sample_rate": 8000},
    "fsd": {"sample_rate": 44100, "kernel_size": 64, "N_encoder": 512, "N": 256,
            "encoder_layers": 10, "nhead": 8, "d_ffn": 512},
}
DECODERS = {
    "crossmamba": {"decoder_variant": "crossmamba"},
    "attention-1s": {"decoder_variant": "attention"},  # context_frames: 1 s, set per size below
    "attention-all": {"decoder_variant": "attention", "context_frames": None},
}


def load_model(size, decoder):
    """The untrained streaming extractor of ``size`` with ``decoder``, in eval mode."""
    overrides = {**SIZES[size], **DECODERS[decoder], "num_classes": 41}
    if decoder == "attention-1s":
        rate, hop = overrides["sample_rate"], overrides.get("kernel_size", 16) // 2
        overrides["context_frames"] = round(rate / hop)
    torch.manual_seed(0)
    with open(os.path.join(ROOT, "hparams", "models", "streaming_tse.yaml")) as f:
        return load_hyperpyyaml(f, overrides)["extractor"].eval()


def _signal(seconds, rate, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(1, int(seconds * rate), generator=g)


def latency_table(sizes, decoders, seconds):
    """Table 1 rows: one per (size, decoder, chunk ms)."""
    rows = []
    for size in sizes:
        for decoder in decoders:
            model = load_model(size, decoder)
            mix = _signal(seconds, model.sample_rate)
            for chunk_ms in (8, 16, 32):
                chunk = round(chunk_ms * model.sample_rate / 1000)
                run = simulate_stream(model, mix, torch.tensor([3]), chunk)
                rows.append({
                    "size": size, "decoder": decoder, "chunk_ms": chunk_ms, "chunk_samples": chunk,
                    **latency_stats(run),
                    "algorithmic_latency_ms": run["chunk_ms"] + run["lookahead_ms"],
                })  # fmt: skip
                print(_latency_row(rows[-1]), flush=True)
    return rows


def _latency_row(r):
    return (f"| {r['size']} | {r['decoder']} | {r['chunk_ms']} ({r['chunk_samples']}) | "
            f"{r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['max_ms']:.2f} | {r['rtf']:.3f} | "
            f"{r['algorithmic_latency_ms']:.2f} |")  # fmt: skip


def _advance(model, state, seconds, skip_attention):
    """Streams ``seconds`` of audio into ``state`` in 2 s chunks; returns the new state."""
    rate = model.sample_rate
    if seconds <= 0:
        return state
    zeros = lambda self, q, k, v: torch.zeros_like(q)  # noqa: E731
    patch = mock.patch.object(CausalCrossAttentionLayer, "_attend", zeros)
    with torch.no_grad(), patch if skip_attention else contextlib.nullcontext():
        for chunk in _signal(seconds, rate, seed=1).split(2 * rate, dim=1):
            _, state = model.forward_chunk(chunk, state)
    return state


def growth_table(sizes, decoders, elapsed, reps):
    """Table 2 rows: per-chunk time and state size after each elapsed time (16 ms chunks)."""
    rows = []
    for size in sizes:
        for decoder in decoders:
            model = load_model(size, decoder)
            chunk = _signal(0.016, model.sample_rate, seed=2)
            state, at, base = model.init_state(torch.tensor([3])), 0.0, None
            for t in (0.0, *elapsed):
                state = _advance(model, state, t - at, decoder == "attention-all")
                times = []
                with torch.no_grad():
                    for _ in range(reps):
                        t0 = time.perf_counter()
                        _, state = model.forward_chunk(chunk, state)
                        times.append(1e3 * (time.perf_counter() - t0))
                at = t + reps * 0.016
                ms = float(np.median(times))
                base = ms if base is None else base
                rows.append({"size": size, "decoder": decoder, "elapsed_s": t, "chunk_ms_median": ms,
                             "ratio_to_start": ms / base, "state_mb": 4 * state_numel(state) / 2**20})
                r = rows[-1]
                print(f"| {size} | {decoder} | {t / 60:g} min | {ms:.2f} | {r['ratio_to_start']:.2f} | "
                      f"{r['state_mb']:.2f} |", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="cpu size, 5 s streams, 1 min only")
    parser.add_argument("--seconds", type=float, default=20.0, help="stream length of table 1")
    parser.add_argument("--reps", type=int, default=50, help="chunks timed per point of table 2")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "out", "streaming.json"))
    args = parser.parse_args()
    sizes = ["cpu"] if args.quick else ["cpu", "fsd"]
    seconds = 5.0 if args.quick else args.seconds
    elapsed = (60.0,) if args.quick else (60.0, 300.0)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    print(f"# Streaming latency ({machine})\n")
    print(f"Table 1: {seconds:g} s streams; latency = from a chunk's arrival to its output.\n")
    print("| size | decoder | chunk ms (samples) | p50 ms | p95 ms | max ms | real-time factor | algorithmic latency ms |")
    print("|---|---|---|---|---|---|---|---|")
    latency = latency_table(sizes, list(DECODERS), seconds)
    print(f"\nTable 2: 16 ms chunks, median of {args.reps} after the elapsed stream time.\n")
    print("| size | decoder | elapsed | ms per chunk | ratio to the start | state MB |")
    print("|---|---|---|---|---|---|")
    growth = growth_table(sizes, list(DECODERS), elapsed, args.reps)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": machine, "latency": latency, "growth": growth}, f, indent=1)
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
