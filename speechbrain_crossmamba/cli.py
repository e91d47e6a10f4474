"""Command line: ``speechbrain-crossmamba extract`` (also ``python -m speechbrain_crossmamba``).

Example::

    speechbrain-crossmamba extract --model results/crossmamba_tse/1234/pretrained \\
        --mixture mix.wav --enrollment enr.wav --out est.wav --plot est.png

Authors
 * speechbrain-crossmamba contributors
"""

import argparse
import os
import sys


def build_parser():
    """The argument parser.

    Example
    -------
    >>> args = build_parser().parse_args(["extract", "--model", "m", "--mixture", "x.wav",
    ...                                   "--label", "siren", "--out", "y.wav"])
    >>> args.command, args.label, args.device
    ('extract', 'siren', 'cpu')
    """
    parser = argparse.ArgumentParser(
        prog="speechbrain-crossmamba",
        description="Target speaker / target sound extraction with CrossMamba models.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ext = sub.add_parser(
        "extract",
        help="extract a target from a mixture file",
        description="Extract the target of MIXTURE given an enrollment utterance (speaker models) "
        "or class names (label models). Audio of any rate and channel count is downmixed and "
        "resampled to the model's rate; the estimate is written at the model's rate.",
    )
    ext.add_argument("--model", required=True, help="pretrained folder (e.g. <output>/pretrained) or hub id")
    ext.add_argument("--mixture", required=True, help="mixture audio file")
    clue = ext.add_mutually_exclusive_group(required=True)
    clue.add_argument("--enrollment", help="enrollment audio of the target speaker")
    clue.add_argument("--label", help="class name(s) of the target sound, space-separated")
    ext.add_argument("--out", required=True, help="output WAV of the estimate")
    ext.add_argument("--plot", help="also write a before/after spectrogram PNG here")
    ext.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    ext.add_argument("--window-seconds", type=float, default=None,
                     help="process inputs longer than this in overlapping windows (default 10)")
    return parser


def extract(args):
    """Runs ``extract``; returns the estimate ([T] tensor)."""
    from speechbrain_crossmamba.inference import TargetSpeakerExtraction

    model = TargetSpeakerExtraction.from_hparams(source=args.model, run_opts={"device": args.device})
    if args.window_seconds:
        model.window_seconds = args.window_seconds
    from speechbrain_crossmamba.evaluation import plot_spectrograms, write_wav

    clue = model.make_clue(args.enrollment, args.label)
    mix = model.load_audio(args.mixture)
    est = model.extract_batch(mix[None], None, clue)[0]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_wav(args.out, est, model.sample_rate)
    if args.plot:
        title = f"clue: {args.label}" if args.label else f"enrollment: {os.path.basename(args.enrollment)}"
        plot_spectrograms(args.plot, {"mixture": mix, "estimate": est}, model.sample_rate, title)
    return est


def main(argv=None):
    """Entry point; bad input ends with a one-line ``error: ...`` and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        extract(args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"speechbrain-crossmamba: error: {error}", file=sys.stderr)
        return 2
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
