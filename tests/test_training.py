"""The training recipe: YAML variants, bad files, end-to-end runs, resuming, determinism."""

import csv
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from speechbrain.dataio.dataio import write_audio
from speechbrain.inference.interfaces import Pretrained

from speechbrain_crossmamba.dataio.synth_events import CLASSES
from speechbrain_crossmamba.training import Checkpointer, TSEBrain, main, prepare_datasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HPARAMS = os.path.join(ROOT, "hparams")
# a tiny model with the recipe's 16 ms frames and chunks (kernel_size 128, K 50); windowed
# extraction is tested on the shipped model (test_pretrained.py)
TINY_MODEL = "--model={N: 16, N_encoder: 16, num_layers: 1, enroll_hidden: 16, d_ffn: 32}"
TINY_SPEAKERS = [
    "--n_train_speakers=4", "--n_valid_speakers=2", "--n_test_speakers=2",
    "--utterances_per_speaker=3", "--n_valid_mixtures=2", "--n_test_mixtures=3",
]


def tiny_args(tmp, data, yaml="crossmamba_tse.yaml", epochs=1, epoch_size=8, extra=()):
    args = [
        os.path.join(HPARAMS, yaml), f"--data_folder={data}", f"--output_folder={tmp}",
        f"--number_of_epochs={epochs}", f"--epoch_size={epoch_size}", "--batch_size=2",
        "--n_examples=1", TINY_MODEL, "--noprogressbar",
    ]
    if "label" in yaml:
        args += ["--n_valid_mixtures=2", "--n_test_mixtures=3", "--seconds=1.0"]
    else:
        args += TINY_SPEAKERS + ["--segment_seconds=1.0", "--enroll_seconds=1.0"]
    return args + list(extra)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """One tiny SynthSpeakers corpus for the whole module (generated once)."""
    return str(tmp_path_factory.mktemp("data"))


def _model_lines(path):
    lines = [line for line in open(path) if line.strip() and not line.startswith("#")]
    return [line for line in lines if not re.match(r"(experiment_name|block_variant|fusion_variant):", line)]


@pytest.mark.parametrize(
    "variant, base",
    [
        ("transformer_tse", "crossmamba_tse"),
        ("mamba_tse", "crossmamba_tse"),
        ("concat_tse", "crossmamba_tse"),
        ("film_tse", "crossmamba_tse"),
        ("transformer_tse_label", "crossmamba_tse_label"),
    ],
)
def test_baselines_change_only_the_model(variant, base):
    variant_path = os.path.join(HPARAMS, variant + ".yaml")
    assert _model_lines(variant_path) == _model_lines(os.path.join(HPARAMS, base + ".yaml"))
    assert "fusion_variant: crossmamba" not in open(variant_path).read()


def test_label_yaml_lists_the_synth_event_classes():
    from hyperpyyaml import load_hyperpyyaml

    with open(os.path.join(HPARAMS, "crossmamba_tse_label.yaml")) as f:
        hp = load_hyperpyyaml(f, {"model": {"N": 8, "N_encoder": 8, "num_layers": 1}})
    assert tuple(hp["classes"]) == CLASSES
    assert hp["model"]["num_classes"] == len(CLASSES)


def _mixture_csv(folder, rows):
    path = os.path.join(folder, "list.csv")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "duration", "mix_wav", "target_wav", "enroll_wav"])
        writer.writerows(rows)
    return path


def _bad_file_hparams(tmp_path, skip):
    good = []
    for name in ("m", "t", "e"):
        good.append(str(tmp_path / f"{name}.wav"))
        write_audio(good[-1], 0.1 * torch.randn(1600), 8000)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00garbage")
    rows = [["ok", 0.2, *good], ["gone", 0.2, str(tmp_path / "missing.wav"), good[1], good[2]],
            ["broken", 0.2, good[0], good[1], str(corrupt)]]
    path = _mixture_csv(str(tmp_path), rows)
    from speechbrain_crossmamba.dataio.tse_data import mixture_dataset

    return {
        "prepare_data": lambda: {"valid": path, "test": path},
        "train_set": lambda: None,
        "eval_set": mixture_dataset,
        "sample_rate": 8000,
        "skip_bad_files": skip,
    }


def test_missing_file_stops_before_training_with_its_name(tmp_path):
    with pytest.raises(ValueError, match=r"row gone: missing file: .*missing\.wav \(column mix_wav\)"):
        prepare_datasets(_bad_file_hparams(tmp_path, skip=False))


def test_skip_bad_files_logs_and_skips(tmp_path, caplog):
    datasets = prepare_datasets(_bad_file_hparams(tmp_path, skip=True))
    assert [item["id"] for item in datasets["test"]] == ["ok"]
    assert "missing.wav" in caplog.text and "corrupt.wav" in caplog.text


def test_wrong_sample_rate_is_named(tmp_path):
    path = str(tmp_path / "x.wav")
    write_audio(path, 0.1 * torch.randn(1600), 16000)
    csv_path = _mixture_csv(str(tmp_path), [["x", 0.1, path, path, path]])
    from speechbrain_crossmamba.dataio.tse_data import check_csv

    with pytest.raises(ValueError, match="wrong sample rate 16000 Hz, expected 8000 Hz"):
        check_csv(csv_path, 8000)


def _first_train_loss(folder):
    line = open(os.path.join(folder, "train_log.txt")).readline()
    return float(re.search(r"train loss: (\S+)", line).group(1))


def test_end_to_end_writes_checkpoints_results_and_pretrained(tmp_path, data):
    out = str(tmp_path / "run")
    main(tiny_args(out, data))
    assert any(name.startswith("CKPT") for name in os.listdir(os.path.join(out, "save")))
    rows = list(csv.DictReader(open(os.path.join(out, "test_results.csv"))))
    assert [r["ID"] for r in rows][-1] == "avg" and len(rows) == 3 + 1
    for key in ("si-snr", "si-snri", "sdr", "sdri"):
        values = [float(r[key]) for r in rows]
        assert all(math.isfinite(v) for v in values)  # no NaN, no inf
        assert abs(sum(values[:-1]) / 3 - values[-1]) < 1e-6
    examples = os.listdir(os.path.join(out, "examples"))
    assert {n.split("_")[-1] for n in examples} >= {"mixture.wav", "enrollment.wav", "estimate.wav", "target.wav"}
    assert any(n.endswith(".png") for n in examples)
    model = Pretrained.from_hparams(source=os.path.join(out, "pretrained"), savedir=os.path.join(out, "pretrained"))
    wav = model.mods.extractor(torch.randn(1, 8000), torch.randn(1, 8000))
    assert wav.shape == (1, 8000) and torch.isfinite(wav).all()


def test_init_from_starts_from_the_pretrained_weights_in_the_extraction_stage(tmp_path, data):
    first = str(tmp_path / "first")
    main(tiny_args(first, data))  # its one epoch is a separation epoch (warm_start_epochs: 3)
    assert "stage: separation" in open(os.path.join(first, "train_log.txt")).read()
    tuned = str(tmp_path / "tuned")  # lr 0: the weights stay those it started from
    main(tiny_args(tuned, data, extra=[f"--init_from={first}/pretrained", "--lr=0.0"]))
    log = open(os.path.join(tuned, "train_log.txt")).read()
    assert "epoch: 1" in log and "stage: extraction" in log and "stage: separation" not in log
    before = torch.load(os.path.join(first, "pretrained", "extractor.ckpt"))
    after = torch.load(os.path.join(tuned, "pretrained", "extractor.ckpt"))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    other = tiny_args(str(tmp_path / "other"), data, extra=[f"--init_from={first}/pretrained"])
    other = [a.replace("N: 16,", "N: 24,") for a in other]
    with pytest.raises(SystemExit, match=r"^init_from: .*extractor.ckpt does not fit this model \(Error"):
        main(other)


def test_a_speaker_classifier_smaller_than_the_training_speakers_is_refused(tmp_path, data):
    args = tiny_args(str(tmp_path / "run"), data, extra=["--n_speaker_classes=3"])  # 4 speakers
    with pytest.raises(SystemExit, match=r"^the training data have 4 speakers but the speaker classifier 3 classes"):
        main(args)


def test_same_seed_same_first_epoch_loss(tmp_path, data):
    losses = []
    for run in ("a", "b"):
        main(tiny_args(str(tmp_path / run), data))
        losses.append(_first_train_loss(str(tmp_path / run)))
    assert losses[0] == losses[1]


class Interrupted(Exception):
    pass


def test_resume_after_interruption_continues_mid_epoch(tmp_path, data, monkeypatch):
    out = str(tmp_path / "run")
    args = tiny_args(out, data, epoch_size=12, extra=["--ckpt_interval_steps=1", "--ckpt_interval_minutes=0"])  # 6 steps
    original, calls = TSEBrain.fit_batch, []

    def crashing(self, batch):
        calls.append(1)
        if len(calls) == 4:  # dies in step 4: steps 1-3 are checkpointed
            raise Interrupted()
        return original(self, batch)

    monkeypatch.setattr(TSEBrain, "fit_batch", crashing)
    with pytest.raises(Interrupted):
        main(args)
    calls.clear()
    monkeypatch.setattr(TSEBrain, "fit_batch", lambda self, batch: calls.append(1) or original(self, batch))
    main(args)
    assert len(calls) == 3  # only the steps that were not checkpointed
    assert open(os.path.join(out, "train_log.txt")).read().count("epoch: 1,") == 1


def test_sigkill_mid_epoch_then_rerun_resumes(tmp_path, data):
    out = str(tmp_path / "run")
    cmd = [sys.executable, os.path.join(ROOT, "train.py")]
    cmd += tiny_args(out, data, epoch_size=120, extra=["--ckpt_interval_steps=2", "--ckpt_interval_minutes=0"])
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    save, deadline = os.path.join(out, "save"), time.time() + 120
    try:
        while time.time() < deadline:
            ckpts = [n for n in os.listdir(save) if n.startswith("CKPT")] if os.path.isdir(save) else []
            try:
                files = os.listdir(os.path.join(save, ckpts[0])) if ckpts else []
            except FileNotFoundError:  # replaced by a newer one meanwhile
                files = []
            if "dataloader-TRAIN.ckpt" in files and Checkpointer.MARKER in files:  # a complete one
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert ckpts, "no intra-epoch checkpoint appeared"
    step = int(open(os.path.join(save, ckpts[0], "brain.ckpt")).read().split("step:")[1].split()[0])
    assert step >= 2
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "Loading a checkpoint from" in rerun.stdout + rerun.stderr
    assert os.path.isfile(os.path.join(out, "test_results.csv"))


def test_checkpoint_cut_short_by_a_kill_is_skipped_on_resume(tmp_path, data):
    """A newest checkpoint whose save was interrupted (a truncated file, no marker) is removed,
    and the run resumes from the complete one before it."""
    out = str(tmp_path / "run")
    args = tiny_args(out, data, epochs=2, extra=["--ckpt_interval_minutes=0"])
    main(args[:3] + ["--number_of_epochs=1"] + args[4:])
    save = os.path.join(out, "save")
    (good,) = [n for n in os.listdir(save) if n.startswith("CKPT")]
    broken = os.path.join(save, good + "-later")
    shutil.copytree(os.path.join(save, good), broken)
    os.remove(os.path.join(broken, "COMPLETE"))
    meta = os.path.join(broken, "CKPT.yaml")
    text = open(meta).read()
    stamp = re.search(r"unixtime: ([0-9.]+)", text).group(1)
    open(meta, "w").write(text.replace(stamp, str(float(stamp) + 60)))  # the newest one
    for name in os.listdir(broken):
        if name.endswith(".ckpt") and name != "brain.ckpt":
            with open(os.path.join(broken, name), "r+b") as f:
                f.truncate(10)
    main(args)  # two epochs: resumes after the first
    assert not os.path.exists(broken)
    log = open(os.path.join(out, "train_log.txt")).read()
    assert log.count("epoch: 1,") == 1 and log.count("epoch: 2,") == 1


def test_a_resumed_run_keeps_its_minutes_and_its_budget(tmp_path, data):
    """The logged minutes and max_train_minutes count the whole run, not one process: the
    checkpoint keeps the minutes trained so far (here set to 50, as if after a long run). A run
    that has trained nothing yet trains its first epoch whatever the budget."""
    out = str(tmp_path / "run")
    args = tiny_args(out, data, epochs=3, extra=["--ckpt_interval_minutes=0"])
    main(args + ["--max_train_minutes=0"])
    log = open(os.path.join(out, "train_log.txt")).read()
    assert "epoch: 1," in log and "epoch: 2," not in log
    save = os.path.join(out, "save")
    (ckpt,) = [n for n in os.listdir(save) if n.startswith("CKPT")]
    meta = os.path.join(save, ckpt, "CKPT.yaml")
    text = open(meta).read()
    first = float(re.search(r"train_minutes: ([0-9.e-]+)", text).group(1))
    assert 0 < first < 5
    open(meta, "w").write(re.sub(r"train_minutes: [0-9.e-]+", "train_minutes: 50.0", text))
    main(args[:3] + ["--number_of_epochs=2"] + args[4:] + ["--max_train_minutes=100"])
    line = [x for x in open(os.path.join(out, "train_log.txt")) if x.startswith("epoch: 2,")][0]
    # from 50, not from 0 (a tiny epoch can log 50.00: the log rounds to 0.01 min)
    assert 50.0 <= float(re.search(r"minutes: ([0-9.]+)", line).group(1)) < 55.0
    main(args + ["--max_train_minutes=30"])  # 50 minutes are spent: epoch 3 never starts
    log = open(os.path.join(out, "train_log.txt")).read()
    assert "epoch: 2," in log and "epoch: 3," not in log and "test si-snri" in log.split("epoch: 2,")[-1]


def test_label_task_one_tiny_epoch(tmp_path):
    out = str(tmp_path / "run")
    main(tiny_args(out, str(tmp_path / "data"), yaml="crossmamba_tse_label.yaml"))
    rows = list(csv.DictReader(open(os.path.join(out, "test_results.csv"))))
    assert len(rows) == 3 + 1
    hp = open(os.path.join(out, "pretrained", "hyperparams.yaml")).read()
    assert "classes:" in hp and "clue_variant: label" in hp


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_torchrun_two_processes_train_both_stages_and_agree(tmp_path, data):
    """The README's multi-GPU command, on CPU with gloo: a separation epoch (the clue encoder
    and the fusion unused) and an extraction epoch; both ranks end with the same weights."""
    out = tmp_path / "ddp"
    args = tiny_args(str(out), data, epochs=2, extra=["--warm_start_epochs=1"])
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        f"--master_port={_free_port()}", os.path.join(ROOT, "tests", "ddp_run.py"), str(tmp_path),
        *args, "--distributed_backend=gloo",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = open(out / "train_log.txt").read()
    assert "stage: separation" in log and "stage: extraction" in log
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    start = torch.load(out / "pretrained" / "extractor.ckpt")  # trained: gates moved off 0
    assert any(k.endswith(".gate") and start[k].abs().sum() > 0 for k in start)


def test_bf16_training_runs_end_to_end(tmp_path, data):
    """``--precision=bf16`` (the README's mixed precision on CPU): trains, tests and exports."""
    out = str(tmp_path / "bf16")
    main(tiny_args(out, data, extra=["--precision=bf16"]))
    assert math.isfinite(_first_train_loss(out))
    rows = list(csv.DictReader(open(os.path.join(out, "test_results.csv"))))
    assert all(math.isfinite(float(r["si-snr"])) for r in rows)
    assert os.path.exists(os.path.join(out, "pretrained", "extractor.ckpt"))


def test_fp16_on_cpu_is_refused_in_one_line(tmp_path, data):
    run = subprocess.run(
        [sys.executable, "train.py", *tiny_args(str(tmp_path / "fp16"), data, extra=["--precision=fp16"])],
        cwd=os.path.dirname(HPARAMS), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "run options: The option `--precision` or `--eval_precision` is set to fp16. This option is not yet supported on CPU" in out, out[-1500:]
    assert "Traceback" not in out
    assert not any(name.startswith("CKPT") for name in os.listdir(tmp_path / "fp16" / "save"))  # no training
