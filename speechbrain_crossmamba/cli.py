"""Command line: ``speechbrain-crossmamba extract | stream | export-onnx | stream-onnx``
(also ``python -m speechbrain_crossmamba``).

Example::

    speechbrain-crossmamba extract --model results/crossmamba_tse/1234/pretrained \\
        --mixture mix.wav --enrollment enr.wav --out est.wav --plot est.png
    speechbrain-crossmamba stream --model results/streaming_crossmamba_label/1234/pretrained \\
        --mixture mix.wav --label siren --chunk-ms 8 --out est.wav
    speechbrain-crossmamba export-onnx --model results/streaming_crossmamba_label/1234/pretrained \\
        --chunk-ms 8 --out model.onnx
    speechbrain-crossmamba stream-onnx --onnx model.onnx --mixture mix.wav --label siren

Authors
 * speechbrain-crossmamba contributors
"""

import argparse
import os
import sys


def _common(sub, name, help, description):
    """A subcommand with the model, mixture, clue and device options."""
    cmd = sub.add_parser(name, help=help, description=description)
    cmd.add_argument(
        "--model",
        required=True,
        help="pretrained folder (e.g. <output>/pretrained) or hub id",
    )
    cmd.add_argument("--mixture", required=True, help="mixture audio file")
    clue = cmd.add_mutually_exclusive_group(required=True)
    clue.add_argument(
        "--enrollment", help="enrollment audio of the target speaker"
    )
    clue.add_argument(
        "--label", help="class name(s) of the target sound, space-separated"
    )
    cmd.add_argument(
        "--device", default="cpu", help="torch device (default: cpu)"
    )
    return cmd


def build_parser():
    """The argument parser.

    Returns
    -------
    argparse.ArgumentParser
        The parser of the four subcommands.

    Example
    -------
    >>> args = build_parser().parse_args(
    ...     [
    ...         "extract",
    ...         "--model",
    ...         "m",
    ...         "--mixture",
    ...         "x.wav",
    ...         "--label",
    ...         "siren",
    ...         "--out",
    ...         "y.wav",
    ...     ]
    ... )
    >>> args.command, args.label, args.device
    ('extract', 'siren', 'cpu')
    >>> build_parser().parse_args(
    ...     ["stream", "--model", "m", "--mixture", "x.wav", "--label", "siren"]
    ... ).chunk_ms
    8.0
    >>> build_parser().parse_args(
    ...     ["export-onnx", "--model", "m", "--out", "m.onnx"]
    ... ).chunk_ms
    8.0
    """
    parser = argparse.ArgumentParser(
        prog="speechbrain-crossmamba",
        description="Target speaker / target sound extraction with CrossMamba models.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ext = _common(
        sub, "extract", "extract a target from a mixture file",
        "Extract the target of MIXTURE given an enrollment utterance (speaker models) "
        "or class names (label models). Audio of any rate and channel count is downmixed and "
        "resampled to the model's rate; the estimate is written at the model's rate.",
    )  # fmt: skip
    ext.add_argument("--out", required=True, help="output WAV of the estimate")
    ext.add_argument(
        "--plot", help="also write a before/after spectrogram PNG here"
    )
    ext.add_argument(
        "--window-seconds",
        type=float,
        default=None,
        help="process inputs longer than this in overlapping windows (default 10)",
    )
    stream = _common(
        sub, "stream", "simulate real-time streaming extraction of a file",
        "Feed MIXTURE to a streaming (causal) model chunk by chunk, as a sound card would, and "
        "report the per-chunk latency (p50, p95, max: from a chunk's arrival to its output) "
        "and the real-time factor. Arrivals are simulated on a virtual clock unless --realtime.",
    )  # fmt: skip
    stream.add_argument(
        "--chunk-ms",
        type=float,
        default=8.0,
        help="chunk length in ms (default 8)",
    )
    stream.add_argument(
        "--realtime",
        action="store_true",
        help="wait for each chunk's arrival on the wall clock",
    )
    stream.add_argument(
        "--out", help="also write the streamed estimate to this WAV"
    )
    export = sub.add_parser(
        "export-onnx", help="export a streaming model to ONNX (one chunk per call)",
        description="Export the chunk step of a streaming (causal) model for one chunk size: "
        "OUT (inputs: the chunk, the clue vector and every state tensor; outputs: the output "
        "samples and the next state), OUT.clue.onnx (the clue encoder) and OUT.json (sample "
        "rate, chunk, delay, clue input and class names, each state tensor's name, shape and "
        "dtype), then check ONNX Runtime against PyTorch. Needs the [onnx] extra.",
    )  # fmt: skip
    export.add_argument(
        "--model", required=True, help="pretrained folder of a streaming model"
    )
    export.add_argument(
        "--chunk-ms",
        type=float,
        default=8.0,
        help="chunk length in ms, rounded to whole filterbank hops (default 8)",
    )
    export.add_argument(
        "--out", required=True, help="the chunk graph to write (.onnx)"
    )
    run = sub.add_parser(
        "stream-onnx", help="simulate real-time streaming with an exported ONNX model",
        description="Feed MIXTURE chunk by chunk to an exported model in ONNX Runtime, as "
        "`stream` does with PyTorch, and report the same per-chunk latency and real-time "
        "factor. The chunk size is the export's. Needs the [onnx] extra.",
    )  # fmt: skip
    run.add_argument(
        "--onnx",
        required=True,
        help="model.onnx or model.json from export-onnx",
    )
    run.add_argument("--mixture", required=True, help="mixture audio file")
    clue = run.add_mutually_exclusive_group(required=True)
    clue.add_argument(
        "--enrollment", help="enrollment audio of the target speaker"
    )
    clue.add_argument(
        "--label", help="class name(s) of the target sound, space-separated"
    )
    run.add_argument(
        "--threads",
        type=int,
        default=None,
        help="ONNX Runtime intra-op threads",
    )
    run.add_argument(
        "--realtime",
        action="store_true",
        help="wait for each chunk's arrival on the wall clock",
    )
    run.add_argument(
        "--out", help="also write the streamed estimate to this WAV"
    )
    return parser


def extract(args):
    """Runs ``extract``: writes the estimate (and the plot) and prints its path.

    Arguments
    ---------
    args : argparse.Namespace
        The parsed command line (see :func:`build_parser`).

    Returns
    -------
    torch.Tensor
        The estimate, [T] at the model's sample rate.
    """
    from speechbrain_crossmamba.evaluation import plot_spectrograms

    model, clue, mix = _load(args)
    if args.window_seconds:
        model.window_seconds = args.window_seconds
    est = model.extract_batch(mix[None], None, clue)[0]
    _write(args.out, est, model.sample_rate)
    if args.plot:
        title = (
            f"clue: {args.label}"
            if args.label
            else f"enrollment: {os.path.basename(args.enrollment)}"
        )
        plot_spectrograms(
            args.plot,
            {"mixture": mix, "estimate": est},
            model.sample_rate,
            title,
        )
    print(args.out)
    return est


def stream(args):
    """Runs ``stream``: prints the latency summary.

    Arguments
    ---------
    args : argparse.Namespace
        The parsed command line (see :func:`build_parser`).

    Returns
    -------
    dict
        The :func:`simulate_stream` result.
    """
    from speechbrain_crossmamba.inference.streaming import (
        latency_summary,
        simulate_stream,
    )

    model, clue, mix = _load(args)
    extractor = model.streaming_extractor
    chunk = round(args.chunk_ms * model.sample_rate / 1000)
    if chunk < 1:
        raise ValueError(
            f"--chunk-ms {args.chunk_ms} is shorter than one sample"
        )
    dev = model.device
    run = simulate_stream(
        extractor, mix.to(dev), clue.to(dev), chunk, args.realtime
    )
    print(latency_summary(run))
    if args.out:
        _write(args.out, run["output"], model.sample_rate)
        print(args.out)
    return run


def export_onnx(args):
    """Runs ``export-onnx``: writes the graphs and prints their paths.

    Arguments
    ---------
    args : argparse.Namespace
        The parsed command line (see :func:`build_parser`).

    Returns
    -------
    dict
        The JSON contract of the export.
    """
    from speechbrain_crossmamba.inference import TargetSpeakerExtraction
    from speechbrain_crossmamba.inference.onnx_export import (
        export_onnx as export,
        export_paths,
    )

    model = TargetSpeakerExtraction.from_hparams(
        source=args.model, run_opts={"device": "cpu"}
    )
    spec = export(model, args.chunk_ms, args.out)
    print(f"{spec['chunk_samples']} samples per chunk ({spec['chunk_ms']:.2f} ms at "
          f"{spec['sample_rate']} Hz), {len(spec['state'])} state tensors; ONNX Runtime against "
          f"PyTorch over 50 chunks: max |difference| {spec['verified_max_abs_diff']:.1e}")  # fmt: skip
    for path in export_paths(args.out).values():
        print(path)
    return spec


def stream_onnx(args):
    """Runs ``stream-onnx``: prints the latency summary.

    Arguments
    ---------
    args : argparse.Namespace
        The parsed command line (see :func:`build_parser`).

    Returns
    -------
    dict
        The :func:`simulate_stream` result.
    """
    from speechbrain_crossmamba.inference.extraction import read_audio
    from speechbrain_crossmamba.inference.onnx_stream import (
        OnnxStreamingExtractor,
    )
    from speechbrain_crossmamba.inference.streaming import (
        latency_summary,
        simulate_stream,
    )

    model = OnnxStreamingExtractor(args.onnx, threads=args.threads)
    if args.label is not None:
        clue = model.labels_to_clue(args.label)
    else:
        if model.clue_kind != "enrollment":
            raise ValueError(
                f"this model takes {model.clue_kind!r} as its clue, not an enrollment"
            )
        clue = read_audio(args.enrollment, model.sample_rate, "enrollment")[
            None
        ]
    mix = read_audio(args.mixture, model.sample_rate)
    run = simulate_stream(model, mix, clue, model.chunk_samples, args.realtime)
    print(latency_summary(run))
    if args.out:
        _write(args.out, run["output"], model.sample_rate)
        print(args.out)
    return run


def _load(args):
    """The model, the clue batch and the mixture [T] named by the arguments."""
    from speechbrain_crossmamba.inference import TargetSpeakerExtraction

    model = TargetSpeakerExtraction.from_hparams(
        source=args.model, run_opts={"device": args.device}
    )
    kind, flag, clue = (
        ("class label", "--label", args.label)
        if model.label_clue
        else ("enrollment", "--enrollment", args.enrollment)
    )
    if clue is None:
        raise ValueError(f"this model extracts by {kind}: pass {flag}")
    return (
        model,
        model.make_clue(args.enrollment, args.label),
        model.load_audio(args.mixture),
    )


def _write(path, wav, rate):
    """Writes ``wav`` to ``path``, creating its folder."""
    from speechbrain_crossmamba.evaluation import write_wav

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_wav(path, wav, rate)


def main(argv=None):
    """Entry point; bad input ends with a one-line error and exit status 2.

    Arguments
    ---------
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0, or 2 on bad input.
    """
    args = build_parser().parse_args(argv)
    try:
        commands = {"extract": extract, "stream": stream, "export-onnx": export_onnx,
                    "stream-onnx": stream_onnx}  # fmt: skip
        commands[args.command](args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"speechbrain-crossmamba: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
