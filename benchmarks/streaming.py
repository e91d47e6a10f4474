"""Streaming latency of the causal host: the CrossMamba decoder against causal cross-attention.

Prints markdown tables and writes ``benchmarks/out/streaming.json``. Every figure is measured
in this run; the growth over a stream is given as ratios to the same model's time at its start.

Models (``hparams/models/streaming_tse.yaml``, untrained: the time does not depend on the
weights), at two sizes: ``cpu`` (the SynthEvents YAMLs: 8 kHz, hop 1 ms) and ``fsd`` (the
FSDSoundScapes recipe: 44.1 kHz, hop 0.73 ms, Waveformer's widths). Three decoders:
``crossmamba``; ``attention-1s`` (the YAMLs' 1 s context window); ``attention-all`` (no window:
its key/value cache grows with the stream).

Every model first streams ``WARM_UP_SECONDS`` of audio in each chunk size, untimed: the first
chunks of a fresh model pay for allocations and lazy set-up, and one slow chunk delays the
chunks queued behind it on the virtual clock.

Table 1: each model streams ``--seconds`` of a random mixture in chunks of 8, 16 and 32 ms
through :func:`~speechbrain_crossmamba.inference.streaming.simulate_stream` (arrivals on a
virtual clock, compute measured), ``--repeats`` times, each from a fresh state: per-chunk
latency p50 / p95 / max over the chunks of every repeat, the range of the repeats' own p50s,
and the real-time factor (compute / audio; < 1 keeps up).

Table 2: the per-chunk compute time (median and p95 of ``--reps`` chunks of 16 ms) at the start
of a stream and after 1 and 5 minutes of it, with the size of the state. The state at t is
reached by streaming t seconds in 2 s chunks (chunk sizes do not change the state). For
``attention-all`` that would cost O(t²) attention, so while it is reached the attention outputs
are skipped; its caches (projected encoder outputs, which never depend on the decoder) are exact.

The JSON output (``--out``) holds both tables and the run's stamp (command, CPU, cores, torch,
date); ``docs/streaming.json`` is the committed one, which README, ``docs/streaming.md`` and
``docs/results.md`` (``benchmarks/paper_table.py``) all cite.

Usage::

    python benchmarks/streaming.py                        # both sizes, 10 s streams x 3, 1 and 5 min
    python benchmarks/streaming.py --out docs/streaming.json   # the committed figures
    python benchmarks/streaming.py --quick                # cpu size, 5 s streams, 1 min only
"""

import argparse
import contextlib
import json
import os
import time
from unittest import mock

import numpy as np
import torch
from hyperpyyaml import load_hyperpyyaml
from models import _peak_rss_mb, machine_stamp  # benchmarks/models.py, next to this file

from speechbrain_crossmamba.inference.streaming import latency_stats, simulate_stream
from speechbrain_crossmamba.nnet.streaming import CausalCrossAttentionLayer, state_numel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHUNKS_MS = (8, 16, 32)
WARM_UP_SECONDS = 0.5  # streamed untimed in each chunk size before a model is timed
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


def warm_up(model, seconds=WARM_UP_SECONDS):
    """Streams ``seconds`` of audio through ``model`` in every chunk size of ``CHUNKS_MS``, untimed."""
    mix = _signal(seconds, model.sample_rate, seed=3)
    for chunk_ms in CHUNKS_MS:
        simulate_stream(model, mix, torch.tensor([3]), round(chunk_ms * model.sample_rate / 1000))


def pooled_stats(runs):
    """p50 / p95 / max latency over the chunks of every run, the real-time factor of them all, and
    the range of the runs' own p50s (ms).

    Example
    -------
    >>> runs = [{"compute_ms": np.array([1.0, 3.0]), "latency_ms": np.array([1.0, 3.0]), "chunk_ms": 8.0},
    ...         {"compute_ms": np.array([2.0, 2.0]), "latency_ms": np.array([2.0, 2.0]), "chunk_ms": 8.0}]
    >>> stats = pooled_stats(runs)
    >>> stats["p50_ms"], stats["max_ms"], stats["rtf"], stats["p50_ms_range"], stats["repeats"]
    (2.0, 3.0, 0.25, [2.0, 2.0], 2)
    """
    pooled = {"compute_ms": np.concatenate([r["compute_ms"] for r in runs]),
              "latency_ms": np.concatenate([r["latency_ms"] for r in runs]), "chunk_ms": runs[0]["chunk_ms"]}
    p50s = [latency_stats(r)["p50_ms"] for r in runs]
    return {**latency_stats(pooled), "p50_ms_range": [min(p50s), max(p50s)], "repeats": len(runs)}


def latency_table(sizes, decoders, seconds, repeats=1):
    """Table 1 rows: one per (size, decoder, chunk ms), each over ``repeats`` streams after a warm-up."""
    rows = []
    for size in sizes:
        for decoder in decoders:
            model = load_model(size, decoder)
            mix = _signal(seconds, model.sample_rate)
            warm_up(model)
            for chunk_ms in CHUNKS_MS:
                chunk = round(chunk_ms * model.sample_rate / 1000)
                runs = [simulate_stream(model, mix, torch.tensor([3]), chunk) for _ in range(repeats)]
                rows.append({
                    "size": size, "decoder": decoder, "chunk_ms": chunk_ms, "chunk_samples": chunk,
                    "seconds": seconds, **pooled_stats(runs),
                    "algorithmic_latency_ms": runs[0]["chunk_ms"] + runs[0]["lookahead_ms"],
                })  # fmt: skip
                print(_latency_row(rows[-1]), flush=True)
    return rows


def _latency_row(r):
    low, high = r["p50_ms_range"]
    return (f"| {r['size']} | {r['decoder']} | {r['chunk_ms']} ({r['chunk_samples']}) | "
            f"{r['p50_ms']:.2f} | {low:.2f}-{high:.2f} | {r['p95_ms']:.2f} | {r['max_ms']:.2f} | "
            f"{r['rtf']:.3f} | {r['algorithmic_latency_ms']:.2f} |")  # fmt: skip


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
            warm_up(model)
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
                             "chunk_ms_p95": float(np.percentile(times, 95)), "reps": reps,
                             "ratio_to_start": ms / base, "state_mb": 4 * state_numel(state) / 2**20})
                r = rows[-1]
                print(f"| {size} | {decoder} | {t / 60:g} min | {ms:.2f} | {r['chunk_ms_p95']:.2f} | "
                      f"{r['ratio_to_start']:.2f} | {r['state_mb']:.2f} |", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="cpu size, 5 s streams, 1 min only")
    parser.add_argument("--seconds", type=float, default=10.0, help="stream length of table 1")
    parser.add_argument("--repeats", type=int, default=3, help="streams per row of table 1")
    parser.add_argument("--reps", type=int, default=50, help="chunks timed per point of table 2")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "out", "streaming.json"))
    args = parser.parse_args()
    sizes = ["cpu"] if args.quick else ["cpu", "fsd"]
    seconds = 5.0 if args.quick else args.seconds
    elapsed = (60.0,) if args.quick else (60.0, 300.0)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    stamp = dict(machine_stamp(), threads=torch.get_num_threads())
    print(f"# Streaming latency ({stamp['device']}, {stamp['threads']} threads, torch {stamp['torch']}, "
          f"{stamp['date']})\n")
    print(f"Table 1: {seconds:g} s streams, {args.repeats} per row after a warm-up; latency = from a "
          "chunk's arrival to its output, over the chunks of every stream.\n")
    print("| size | decoder | chunk ms (samples) | p50 ms | p50 range over streams | p95 ms | max ms "
          "| real-time factor | algorithmic latency ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    t0 = time.perf_counter()
    latency = latency_table(sizes, list(DECODERS), seconds, args.repeats)
    print(f"\nTable 2: 16 ms chunks, median and p95 of {args.reps} after the elapsed stream time.\n")
    print("| size | decoder | elapsed | ms per chunk (median) | p95 | ratio to the start | state MB |")
    print("|---|---|---|---|---|---|---|")
    growth = growth_table(sizes, list(DECODERS), elapsed, args.reps)
    stamp["minutes"] = round((time.perf_counter() - t0) / 60, 1)
    stamp["peak_rss_gb"] = round(_peak_rss_mb() / 1024, 2)  # this process's VmHWM
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"stamp": stamp, "repeats": args.repeats, "seconds": seconds, "reps": args.reps,
                   "latency": latency, "growth": growth}, f, indent=1)
    print(f"\nwritten to {args.out} ({stamp['minutes']} min, peak RSS {stamp['peak_rss_gb']} GB)")


if __name__ == "__main__":
    main()
