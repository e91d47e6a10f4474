"""Real-time simulation of a streaming extractor: per-chunk compute time and latency.

:func:`simulate_stream` feeds a signal to a :class:`StreamingExtractor` chunk by chunk, as a
sound card would deliver it, and measures each chunk. Chunk ``i`` arrives when its last sample
has been recorded, at ``(i + 1) · chunk duration``; it is processed once it has arrived and the
previous chunk is done; its latency is the time from its arrival to its output. Without
``realtime`` the arrivals are simulated on a virtual clock (the compute times are measured;
nothing sleeps); with ``realtime`` the function waits for each arrival on the wall clock.

Authors
 * speechbrain-crossmamba contributors
"""

import time

import numpy as np
import torch


def simulate_stream(
    extractor, mixture, clue, chunk_samples, realtime=False, clue_lengths=None
):
    """Streams ``mixture`` through ``extractor`` in chunks of ``chunk_samples``; times each.

    Arguments
    ---------
    extractor : StreamingExtractor
        The model (``init_state``, ``forward_chunk``, ``flush``).
    mixture : torch.Tensor
        The signal [T] or [1, T], at the model's rate.
    clue : torch.Tensor
        Its clue, as the model takes it (batch of one).
    chunk_samples : int
        Samples per chunk.
    realtime : bool
        Wait for each chunk's arrival on the wall clock instead of simulating it.
    clue_lengths : torch.Tensor, optional
        Relative length of an enrollment clue.

    Returns
    -------
    dict
        ``output`` [T] (the extracted signal), ``compute_ms`` and ``latency_ms`` (one per chunk,
        numpy arrays), ``chunk_ms`` and ``lookahead_ms`` (the decoder's overlap-add).

    Example
    -------
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> hp = load_hyperpyyaml(
    ...     open("hparams/models/streaming_tse.yaml"),
    ...     {"N": 8, "N_encoder": 8, "encoder_layers": 2, "decoder_layers": 1},
    ... )
    >>> run = simulate_stream(
    ...     hp["extractor"], torch.randn(4000), torch.tensor([2]), 64
    ... )
    >>> run["output"].shape, len(run["compute_ms"])
    (torch.Size([4000]), 63)
    """
    if chunk_samples < 1:
        raise ValueError(
            f"a chunk must hold at least one sample, got {chunk_samples}"
        )
    mixture = mixture.reshape(1, -1)
    rate = extractor.sample_rate
    chunk_s = chunk_samples / rate
    compute, latency, outputs = [], [], []
    with torch.no_grad():
        state = extractor.init_state(clue, clue_lengths)
        start = time.perf_counter()
        done = 0.0  # when the previous chunk's output was ready (stream clock, seconds)
        for i, chunk in enumerate(mixture.split(chunk_samples, dim=1)):
            arrival = (i + 1) * chunk_s
            if realtime:
                time.sleep(max(0.0, arrival - (time.perf_counter() - start)))
            t0 = time.perf_counter()
            out, state = extractor.forward_chunk(chunk, state)
            spent = time.perf_counter() - t0
            if realtime:
                done = time.perf_counter() - start
            else:
                done = max(arrival, done) + spent
            compute.append(spent)
            latency.append(done - arrival)
            outputs.append(out)
        outputs.append(extractor.flush(state))
    return {
        "output": torch.cat(outputs, dim=1)[0].float().cpu(),
        "compute_ms": 1e3 * np.array(compute),
        "latency_ms": 1e3 * np.array(latency),
        "chunk_ms": 1e3 * chunk_s,
        "lookahead_ms": 1e3 * extractor.latency_samples / rate,
    }


def latency_stats(run):
    """Per-chunk latency p50, p95 and max (ms) and the real-time factor of a
    :func:`simulate_stream` result.

    Arguments
    ---------
    run : dict
        A :func:`simulate_stream` result (``compute_ms``, ``latency_ms``, ``chunk_ms``).

    Returns
    -------
    dict
        ``p50_ms``, ``p95_ms``, ``max_ms`` and ``rtf``.

    Example
    -------
    >>> latency_stats(
    ...     {
    ...         "compute_ms": np.array([1.0, 3.0]),
    ...         "latency_ms": np.array([1.0, 3.0]),
    ...         "chunk_ms": 8.0,
    ...     }
    ... )
    {'p50_ms': 2.0, 'p95_ms': 2.9, 'max_ms': 3.0, 'rtf': 0.25}
    """
    lat = run["latency_ms"]
    return {"p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "max_ms": float(lat.max()),
            "rtf": float(run["compute_ms"].sum() / (len(lat) * run["chunk_ms"]))}  # fmt: skip


def latency_summary(run):
    """Two lines for a :func:`simulate_stream` result: setup, then latency percentiles.

    Arguments
    ---------
    run : dict
        A :func:`simulate_stream` result (``compute_ms``, ``latency_ms``, ``chunk_ms``,
        ``lookahead_ms``).

    Returns
    -------
    str
        The summary.

    Example
    -------
    >>> run = {
    ...     "compute_ms": np.array([1.0, 2.0, 3.0]),
    ...     "latency_ms": np.array([1.0, 2.0, 3.0]),
    ...     "chunk_ms": 8.0,
    ...     "lookahead_ms": 1.0,
    ... }
    >>> print(latency_summary(run))
    3 chunks of 8.0 ms; algorithmic latency 9.0 ms (chunk + 1.0 ms decoder overlap); real-time factor 0.250
    per-chunk latency: p50 2.00 ms, p95 2.90 ms, max 3.00 ms; chunks late (latency > chunk): 0
    """
    lat, stats = run["latency_ms"], latency_stats(run)
    late = int((lat > run["chunk_ms"]).sum())
    return (
        f"{len(lat)} chunks of {run['chunk_ms']:.1f} ms; algorithmic latency "
        f"{run['chunk_ms'] + run['lookahead_ms']:.1f} ms (chunk + {run['lookahead_ms']:.1f} ms "
        f"decoder overlap); real-time factor {stats['rtf']:.3f}\n"
        f"per-chunk latency: p50 {stats['p50_ms']:.2f} ms, p95 {stats['p95_ms']:.2f} ms, "
        f"max {stats['max_ms']:.2f} ms; chunks late (latency > chunk): {late}"
    )
