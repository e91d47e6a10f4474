"""Helpers of ``benchmarks/gpu_check.py``: timing, peak memory, the time budget and the outputs.

Timing (:func:`measure`): up to two warm-up calls (the first compiles Triton kernels and picks
cuBLAS / cuDNN algorithms), then up to ``reps`` timed calls, fewer when one call is slow so that
a case stays near ``max_s``; each timed call lies between two CUDA events (CUDA tensors) or two
``time.perf_counter`` readings (CPU), and the median is reported. Peak memory, on CUDA only, is
``torch.cuda.max_memory_allocated`` after ``torch.cuda.reset_peak_memory_stats``. An
out-of-memory error or any other exception becomes the case's ``status`` (``"oom"``,
``"error"``), never a crash. Nothing here asserts a timing: a benchmark measures.

Authors
 * speechbrain-crossmamba contributors
"""

import datetime
import gc
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Budget:
    """The wall-clock budget of a run, from its creation; sections end at shares of it.

    Arguments
    ---------
    seconds : float
        The whole budget.
    start : float, optional
        Its start, a ``time.perf_counter()`` reading (default: now).

    Example
    -------
    >>> budget = Budget(100.0)
    >>> budget.allows(10.0, share=0.5), budget.allows(60.0, share=0.5)
    (True, False)
    """

    def __init__(self, seconds, start=None):
        self.seconds = seconds
        self.start = time.perf_counter() if start is None else start

    def elapsed(self):
        """Seconds since the start."""
        return time.perf_counter() - self.start

    def allows(self, predicted_s=0.0, share=1.0):
        """Whether a case predicted to take ``predicted_s`` ends before ``share`` of the budget."""
        return self.elapsed() + predicted_s <= share * self.seconds


def predict(last_wall, last_size, size, power):
    """Wall time of the next case from the last one's, scaled as ``(size / last_size) ** power``.

    Example
    -------
    >>> predict(2.0, 1000, 2000, 2), predict(None, 1000, 2000, 2)
    (8.0, 0.0)
    """
    if last_wall is None:
        return 0.0
    return last_wall * (size / last_size) ** power


def predict_case(last, size, power, max_s):
    """Wall seconds of a :func:`measure` case from the last size's call time.

    One call is taken to scale as ``(size / last_size) ** power``; the case is two warm-up
    calls and timed calls for about ``max_s`` (one at least).

    Arguments
    ---------
    last : tuple or None
        ``(seconds of one call, size)`` of the last size; None: nothing to go by (0).
    size : float
        The next size.
    power : float
        How one call grows with the size.
    max_s : float
        ``measure``'s ``max_s``.

    Returns
    -------
    float

    Example
    -------
    >>> (
    ...     predict_case((0.5, 1000), 2000, 2, 4.0),
    ...     predict_case(None, 2000, 2, 4.0),
    ... )
    (8.0, 0.0)
    """
    if last is None:
        return 0.0
    call = last[0] * (size / last[1]) ** power
    return 2 * call + max(max_s, call)


def one_line(err):
    """The last line of an exception's message, with its type, at most 300 characters."""
    lines = str(err).strip().splitlines() or [""]
    return f"{type(err).__name__}: {lines[-1]}"[:300]


def is_oom(err):
    """Whether ``err`` is an out-of-memory error (CUDA or host)."""
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    return "out of memory" in str(err).lower()


def free_memory(device, collect=True):
    """Collects garbage (a slow pass: after errors, sections) and empties CUDA's cache."""
    if collect:
        gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device):
    """Milliseconds of one call of ``fn``: CUDA events on CUDA, ``perf_counter`` on CPU."""
    if device.type != "cuda":
        t0 = time.perf_counter()
        fn()
        return 1e3 * (time.perf_counter() - t0)
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def measure(fn, device, reps, max_s):
    """Median time and peak memory of ``fn()``; an exception becomes the returned ``status``.

    Arguments
    ---------
    fn : callable
        The work of one call (its result is dropped).
    device : torch.device
        Where it runs (CUDA: events, synchronisation and peak memory).
    reps : int
        Timed calls at most.
    max_s : float
        Rough seconds for the timed calls: fewer than ``reps`` when one call is slow (at least one).

    Returns
    -------
    dict
        ``status`` (``"ok"``, ``"oom"`` or ``"error"``), ``wall_s``; when ok ``ms`` (median),
        ``times_ms``, ``warmup_s`` (the last warm-up), ``peak_mb`` and ``extra_mb`` (peak over
        what was allocated before; ``None`` on CPU); else ``error``.

    Example
    -------
    >>> measure(lambda: None, torch.device("cpu"), 3, 1.0)["status"]
    'ok'
    >>> measure(lambda: 1 / 0, torch.device("cpu"), 3, 1.0)["status"]
    'error'
    >>> def oom():
    ...     raise torch.OutOfMemoryError(
    ...         "CUDA out of memory. Tried to allocate"
    ...     )
    >>> measure(oom, torch.device("cpu"), 3, 1.0)["status"]
    'oom'
    """
    t0 = time.perf_counter()
    row = {}
    try:
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        _sync(device)
        warm = _timed(fn, device) / 1e3
        if warm < max_s / 4:  # a second warm-up, unless one call is long
            warm = _timed(fn, device) / 1e3
        n = max(1, min(reps, int(max_s / max(warm, 1e-6))))
        times = [_timed(fn, device) for _ in range(n)]
        row = {"status": "ok", "ms": statistics.median(times)}
        row.update(times_ms=times, warmup_s=warm, peak_mb=None, extra_mb=None)
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device)
            row.update(peak_mb=peak / 2**20, extra_mb=(peak - base) / 2**20)
    except Exception as err:  # a failing case is a row
        row = {"status": "oom" if is_oom(err) else "error"}
        row["error"] = one_line(err)
    # after a failure, the traceback's frames hold tensors until collected
    free_memory(device, collect=row["status"] != "ok")
    row["wall_s"] = time.perf_counter() - t0
    return row


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_head():
    try:
        out = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(device):
    """Facts of the machine: date, versions, GPU name, memory and TF32 settings."""
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "device": str(device),
        "gpu": None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": _version("triton"),
        "mamba_ssm": _version("mamba-ssm") or _version("mamba_ssm"),
        "speechbrain": _version("speechbrain"),
        "git": _git_head(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_memory_gb=props.total_memory / 2**30,
            capability=f"{props.major}.{props.minor}",
            multiprocessors=props.multi_processor_count,
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            tf32_cudnn=torch.backends.cudnn.allow_tf32,
        )
    return info


def strict(obj):
    """``obj`` with every non-finite float replaced by None, for strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def _fmt(value, fmt):
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, fmt) if math.isfinite(value) else str(value)
    return str(value)


def md_table(rows, columns):
    """A Markdown table: ``columns`` is a list of (header, key, format) triples."""
    lines = ["| " + " | ".join(c[0] for c in columns) + " |"]
    lines.append("|" + "---|" * len(columns))
    for row in rows:
        cells = [_fmt(row.get(key), fmt) for _, key, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


AGREEMENT_COLUMNS = [
    ("shape", "shape", ""),
    ("b x d x n x L", "dims", ""),
    ("dtype", "dtype", ""),
    ("backend", "backend", ""),
    ("oracle", "oracle", ""),
    ("status", "status", ""),
    ("y rel", "y_rel", ".1e"),
    ("max rel", "max_rel", ".1e"),
    ("worst", "worst", ""),
    ("max abs", "max_abs", ".1e"),
    ("tol y / grad", "tol", ""),
    ("ok", "ok", ""),
    ("note", "reason", ""),
]
LAYER_COLUMNS = [
    ("L", "L", ""),
    ("precision", "precision", ""),
    ("pass", "pass", ""),
    ("attention (ms)", "attention_ms", ".2f"),
    ("CrossMamba (ms)", "crossmamba_ms", ".2f"),
    ("attention / CrossMamba", "ratio", ".2f"),
    ("attention peak (MB)", "attention_peak_mb", ".0f"),
    ("CrossMamba peak (MB)", "crossmamba_peak_mb", ".0f"),
    ("note", "note", ""),
]
MODEL_COLUMNS = [
    ("host", "host", ""),
    ("audio (s)", "seconds", "g"),
    ("pass", "pass", ""),
    ("CrossMamba-TSE (ms)", "crossmamba_ms", ".1f"),
    ("Transformer-TSE (ms)", "transformer_ms", ".1f"),
    ("Transformer / CrossMamba", "ratio", ".2f"),
    ("time saved (%)", "saved_pct", ".1f"),
    ("CrossMamba peak (MB)", "crossmamba_peak_mb", ".0f"),
    ("Transformer peak (MB)", "transformer_peak_mb", ".0f"),
    ("note", "note", ""),
]


def markdown(report):
    """The Markdown summary of a report (see :func:`write_outputs`)."""
    m, sb = report.get("machine", {}), report.get("scan_backend", {})
    versions = ", ".join(
        f"{k} {m.get(k)}"
        for k in ("torch", "cuda", "triton", "mamba_ssm", "speechbrain", "git")
    )
    out = [
        f"# GPU check: {m.get('gpu') or m.get('device')}, {m.get('date')}",
        "",
        f"{versions}; {'quick' if report['quick'] else 'full'} run, "
        f"{report['elapsed_s']:.0f} s of a {report['budget_s']:.0f} s budget"
        f"{'' if report['complete'] else ' (stopped early: outputs as far as it got)'}.",
        f"Scan backend of the timings: {sb.get('used')} (requested "
        f"{sb.get('requested')}, resolves to {sb.get('resolved')})"
        + (f"; {sb['note']}" if sb.get("note") else "")
        + ".",
        "",
        "## 1. Selective-scan agreement (output y and gradients)",
        "",
        report.get("agreement_note", ""),
        "",
        md_table(report.get("agreement", []), AGREEMENT_COLUMNS),
        "",
        "## 2. One CrossMamba layer against cross-attention (batch 1)",
        "",
        report.get("layer_note", ""),
        "",
        md_table(report.get("layer_pairs", []), LAYER_COLUMNS),
        "",
        "## 3. CrossMamba-TSE against Transformer-TSE",
        "",
        report.get("model_note", ""),
        "",
        md_table(report.get("model_pairs", []), MODEL_COLUMNS),
        "",
    ]
    if report.get("errors"):
        out += ["## Errors", ""] + [f"- {e}" for e in report["errors"]] + [""]
    return "\n".join(out)


def write_outputs(out_dir, report):
    """Writes ``gpu_check.json`` and ``gpu_check.md`` into ``out_dir`` (each file replaced whole).

    Returns
    -------
    tuple of str
        The two paths.
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = (
        os.path.join(out_dir, "gpu_check.json"),
        os.path.join(out_dir, "gpu_check.md"),
    )
    texts = (json.dumps(strict(report), indent=1), markdown(report))
    for path, text in zip(paths, texts):
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    return paths
