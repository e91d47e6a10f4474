"""Per-chunk latency of the streaming host in ONNX Runtime against PyTorch, in the same run.

Each model of ``benchmarks/streaming.py`` (untrained: the time does not depend on the weights;
sizes ``cpu`` and ``fsd``, decoders ``crossmamba`` and ``attention-1s``) is exported with
:func:`~speechbrain_crossmamba.inference.onnx_export.export_onnx` for chunks of 8, 16 and 32 ms
(rounded to whole hops: 352, 704 and 1408 samples at 44.1 kHz), and the same random mixture is
streamed through both engines by
:func:`~speechbrain_crossmamba.inference.streaming.simulate_stream` (arrivals on a virtual
clock, compute measured). Both use ``--threads`` threads (default 2, this machine's cores).

Prints a markdown table and writes ``benchmarks/out/onnx_streaming.json``.

Usage::

    python benchmarks/onnx_streaming.py           # both sizes, 20 s streams (~8 min)
    python benchmarks/onnx_streaming.py --quick   # cpu size, 2 s streams, 8 ms chunks (~1 min)
"""

import argparse
import json
import os
import platform
import tempfile

import torch
from streaming import ROOT, _signal, load_model

from speechbrain_crossmamba.inference.onnx_export import export_onnx
from speechbrain_crossmamba.inference.onnx_stream import OnnxStreamingExtractor
from speechbrain_crossmamba.inference.streaming import latency_stats, simulate_stream


def measure(size, decoder, chunk_ms, seconds, threads, folder):
    """One row: both engines stream the same ``seconds`` of mixture in the export's chunks."""
    model = load_model(size, decoder)
    path = os.path.join(folder, f"{size}_{decoder}_{chunk_ms}.onnx")
    spec = export_onnx(model, chunk_ms, path)
    runner = OnnxStreamingExtractor(path, threads=threads)
    mix, chunk, label = _signal(seconds, model.sample_rate), spec["chunk_samples"], torch.tensor([3])
    ort_run = simulate_stream(runner, mix, label, chunk)
    torch_run = simulate_stream(model, mix, label, chunk)
    ort, pt = latency_stats(ort_run), latency_stats(torch_run)
    return {"size": size, "decoder": decoder, "chunk_ms": spec["chunk_ms"], "chunk_samples": chunk,
            "torch": pt, "onnxruntime": ort, "p50_ratio": ort["p50_ms"] / pt["p50_ms"],
            "max_abs_diff": float((ort_run["output"] - torch_run["output"])[:-model.stride].abs().max()),
            "verified_max_abs_diff": spec["verified_max_abs_diff"]}  # fmt: skip


def _row(r):
    pt, ort = r["torch"], r["onnxruntime"]
    return (f"| {r['size']} | {r['decoder']} | {r['chunk_ms']:.2f} ({r['chunk_samples']}) | "
            f"{pt['p50_ms']:.2f} | {ort['p50_ms']:.2f} | {r['p50_ratio']:.2f} | {pt['rtf']:.3f} | "
            f"{ort['rtf']:.3f} | {ort['p95_ms']:.2f} | {ort['max_ms']:.2f} | {r['max_abs_diff']:.1e} |")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="cpu size, 2 s streams, 8 ms chunks")
    parser.add_argument("--seconds", type=float, default=20.0, help="stream length")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "out", "onnx_streaming.json"))
    args = parser.parse_args()
    sizes, chunks = (["cpu"], [8]) if args.quick else (["cpu", "fsd"], [8, 16, 32])
    seconds = 2.0 if args.quick else args.seconds
    torch.set_num_threads(args.threads)
    machine = (f"{platform.processor() or platform.machine()}, {args.threads} threads, "
               f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}")  # fmt: skip
    print(f"# Streaming in ONNX Runtime against PyTorch ({machine})\n")
    print(f"{seconds:g} s streams; latency = from a chunk's arrival to its output; p50 ratio = "
          "ONNX Runtime / PyTorch.\n")
    print("| size | decoder | chunk ms (samples) | PyTorch p50 ms | ORT p50 ms | p50 ratio | "
          "PyTorch RTF | ORT RTF | ORT p95 ms | ORT max ms | max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            for decoder in ("crossmamba", "attention-1s"):
                for chunk_ms in chunks:
                    rows.append(measure(size, decoder, chunk_ms, seconds, args.threads, folder))
                    print(_row(rows[-1]), flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": machine, "seconds": seconds, "rows": rows}, f, indent=1)
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
