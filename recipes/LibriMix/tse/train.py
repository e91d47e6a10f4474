#!/usr/bin/env python3
"""Recipe for training a target-speaker extraction (TSE) model on Libri2Mix.

The model gets a two-speaker mixture and an enrollment (another utterance of
one of the speakers) and returns that speaker's speech. It is trained on
SI-SNR; the test set is scored in ``test_results.csv`` and the trained model
is exported to ``<output_folder>/pretrained/``. The hparams files build
CrossMamba-TSE or one of its baselines.

To run this recipe:
> python train.py hparams/crossmamba_tse.yaml --data_folder=/path/to/LibriMix

Authors
 * speechbrain-crossmamba contributors
"""

import os
import re
import sys
import tempfile

import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain_crossmamba.dataio.enrollment import enrollment_train_set
from speechbrain_crossmamba.dataio.tse_data import check_csv
from speechbrain_crossmamba.evaluation import (
    perceptual_metrics,
    save_example,
    si_snr,
    utterance_metrics,
    write_results,
)
from speechbrain_crossmamba.export import export_pretrained

import speechbrain as sb
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

# The lines of an hparams file between these two comments build the model.
MODEL_BEGIN, MODEL_END = "# ---- Model", "# ---- Training"


class Extraction(sb.Brain):
    """Trains a target extractor on SI-SNR and scores it on the test set."""

    def compute_forward(self, batch, stage):
        """Extracts the enrolled speaker from each mixture of the batch.

        Arguments
        ---------
        batch : speechbrain.dataio.batch.PaddedBatch
            Holds ``mix_sig``, ``target_sig`` and ``enroll_sig``.
        stage : sb.Stage
            TRAIN, VALID or TEST.

        Returns
        -------
        torch.Tensor
            The estimated targets, [batch, time].
        """
        batch = batch.to(self.device)
        mix, mix_lens = batch.mix_sig
        enroll, enroll_lens = batch.enroll_sig
        return self.modules.extractor(
            mix, enroll, lengths=mix_lens, clue_lengths=enroll_lens
        )

    def compute_objectives(self, predictions, batch, stage):
        """Negative SI-SNR; in training, examples above the threshold drop out.

        Arguments
        ---------
        predictions : torch.Tensor
            The estimated targets, [batch, time].
        batch : speechbrain.dataio.batch.PaddedBatch
            The batch.
        stage : sb.Stage
            TRAIN, VALID or TEST.

        Returns
        -------
        torch.Tensor
            The loss.
        """
        target, lens = batch.target_sig
        snr = si_snr(predictions, target, lens)
        if stage == sb.Stage.TRAIN:
            loss = -snr
            if self.hparams.threshold_byloss:
                kept = loss[loss > self.hparams.threshold]
                loss = kept if kept.numel() > 0 else loss
            return loss.mean()
        mix, _ = batch.mix_sig
        self.snr.append(snr.detach().cpu())
        self.snri.append((snr - si_snr(mix, target, lens)).detach().cpu())
        if stage == sb.Stage.TEST:
            self.score_test_batch(predictions, batch)
        return -snr.mean()

    def score_test_batch(self, predictions, batch):
        """Adds one row of scores per test mixture and writes the examples.

        Arguments
        ---------
        predictions : torch.Tensor
            The estimated targets, [batch, time].
        batch : speechbrain.dataio.batch.PaddedBatch
            The test batch.
        """
        target, lens = batch.target_sig
        mix, _ = batch.mix_sig
        enroll, enroll_lens = batch.enroll_sig
        rate = self.hparams.sample_rate
        for i, uid in enumerate(batch.id):
            n = int(torch.round(lens[i] * target.shape[1]))
            ref, mixture = target[i, :n], mix[i, :n]
            est = predictions[i, :n].float()
            row = {"ID": uid, **utterance_metrics(est, ref, mixture)}
            row.update(perceptual_metrics(est, ref, mixture, rate))
            self.test_rows.append(row)
            if len(self.test_rows) > self.hparams.n_examples:
                continue
            m = int(torch.round(enroll_lens[i] * enroll.shape[1]))
            signals = {"mixture": mixture, "enrollment": enroll[i, :m]}
            signals.update(estimate=est, target=ref)
            folder = os.path.join(self.hparams.output_folder, "examples")
            title = f"{uid}: SI-SNRi {row['si-snri']:.1f} dB"
            if if_main_process():
                save_example(folder, uid, signals, rate, title)

    def on_stage_start(self, stage, epoch=None):
        """Resets the scores; tells the training set which epoch to draw.

        Arguments
        ---------
        stage : sb.Stage
            TRAIN, VALID or TEST.
        epoch : int, optional
            The epoch about to run.
        """
        self.snr, self.snri, self.test_rows = [], [], []
        if stage == sb.Stage.TRAIN:
            self.train_set.set_epoch(epoch)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs; after validation steps the scheduler and keeps the best
        checkpoint; after the test writes ``test_results.csv``.

        Arguments
        ---------
        stage : sb.Stage
            TRAIN, VALID or TEST.
        stage_loss : float
            The average loss of the stage.
        epoch : int, optional
            The epoch that ran.
        """
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss}
            return
        stats = {
            "si-snr": torch.cat(self.snr).mean().item(),
            "si-snri": torch.cat(self.snri).mean().item(),
        }
        if stage == sb.Stage.VALID:
            current_lr, next_lr = self.hparams.lr_scheduler(
                [self.optimizer], epoch, stage_loss
            )
            sb.nnet.schedulers.update_learning_rate(self.optimizer, next_lr)
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": current_lr},
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(
                meta=stats, max_keys=["si-snr"]
            )
        else:
            if if_main_process():
                keys = ["si-snr", "si-snri", "sdr", "sdri"]
                optional = ("pesq", "pesqi", "stoi", "stoii")
                keys += [
                    k for k in optional if any(k in r for r in self.test_rows)
                ]
                path = os.path.join(
                    self.hparams.output_folder, "test_results.csv"
                )
                stats = write_results(path, self.test_rows, keys)
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current},
                test_stats=stats,
            )


def dataio_prep(hparams):
    """Checks every audio file of the CSVs, then builds the three datasets.

    Training items are (mixture, target) rows with an enrollment drawn afresh
    every epoch (or, with ``dynamic_mixing``, new mixtures every epoch);
    validation and test items keep the enrollment of their row.

    Arguments
    ---------
    hparams : dict
        The loaded hparams file.

    Returns
    -------
    dict
        ``{"train": ..., "valid": ..., "test": ...}``.
    """
    rate, skip = hparams["sample_rate"], hparams["skip_bad_files"]
    noise_csv = None
    if hparams["dynamic_mixing"] and hparams["mix_type"] == "mix_both":
        noise_csv = hparams["train_noise_csv"]
    bad = set()
    for path in (hparams["train_csv"], hparams["train_utts_csv"], noise_csv):
        if path is not None:
            bad |= check_csv(path, rate, skip)
    train = enrollment_train_set(
        hparams["train_csv"],
        hparams["train_utts_csv"],
        noise_csv=noise_csv,
        dynamic_mixing=hparams["dynamic_mixing"],
        enroll_seconds=hparams["enroll_seconds"],
        segment_seconds=hparams["segment_seconds"],
        snr_range=hparams["snr_range"],
        noise_db=hparams["noise_db"],
        sample_rate=rate,
        seed=hparams["seed"],
        exclude=bad,
    )
    evaluation = []
    for path in (hparams["valid_csv"], hparams["test_csv"]):
        data = sb.dataio.dataio.load_data_csv(path)
        for uid in check_csv(path, rate, skip):
            del data[uid]
        if not data:
            raise ValueError(f"{path}: no usable rows")
        evaluation.append(sb.dataio.dataset.DynamicItemDataset(data))

    @sb.utils.data_pipeline.takes("mix_wav", "target_wav", "enroll_wav")
    @sb.utils.data_pipeline.provides("mix_sig", "target_sig", "enroll_sig")
    def audio_pipeline(mix_wav, target_wav, enroll_wav):
        """Reads the mixture, the target and the enrollment."""
        for path in (mix_wav, target_wav, enroll_wav):
            yield sb.dataio.dataio.read_audio(path)

    sb.dataio.dataset.add_dynamic_item(evaluation, audio_pipeline)
    keys = ["id", "mix_sig", "target_sig", "enroll_sig"]
    sb.dataio.dataset.set_output_keys(evaluation, keys)
    return {"train": train, "valid": evaluation[0], "test": evaluation[1]}


def export_model(extractor, hparams, hparams_file):
    """Writes ``<output_folder>/pretrained/``: ``extractor.ckpt`` and a
    ``hyperparams.yaml`` made of the model lines of the hparams file (from
    ``MODEL_BEGIN`` to ``MODEL_END``) with the trained values written in.

    Arguments
    ---------
    extractor : torch.nn.Module
        The trained extractor.
    hparams : dict
        The loaded hparams file (with the command-line overrides).
    hparams_file : str
        The hparams file.

    Returns
    -------
    str
        The folder written.
    """
    with open(hparams_file, encoding="utf-8") as f:
        text = f.read()
    start, end = text.find(MODEL_BEGIN), text.find(MODEL_END)
    if not 0 <= start < end:
        raise ValueError(f"{hparams_file}: no {MODEL_BEGIN!r} section")
    section = text[start:end]
    names = set(re.findall(r"^(\w+):", section, flags=re.MULTILINE))
    names |= set(re.findall(r"<(\w+)>", section))
    model = {name: hparams[name] for name in names}
    folder = os.path.join(hparams["output_folder"], "pretrained")
    with tempfile.TemporaryDirectory() as tmp:
        model_file = os.path.join(tmp, os.path.basename(hparams_file))
        with open(model_file, "w", encoding="utf-8") as f:
            f.write(section)
        export_pretrained(extractor, model, model_file, folder)
    return folder


if __name__ == "__main__":
    # Load the hparams file with the command-line overrides
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    try:
        with open(hparams_file, encoding="utf-8") as fin:
            hparams = load_hyperpyyaml(fin, overrides)
    except (OSError, ValueError, KeyError) as error:  # e.g. no data_folder
        sys.exit(f"{hparams_file}: {error}")

    # Initialize ddp (useful only for multi-GPU DDP training)
    sb.utils.distributed.ddp_init_group(run_opts)

    # Create the experiment directory
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )

    # Data preparation, then the datasets
    try:
        if not hparams["skip_prep"]:
            from prepare_libri2mix_tse import prepare_libri2mix_tse

            run_on_main(
                prepare_libri2mix_tse,
                kwargs={
                    "data_folder": hparams["data_folder"],
                    "save_folder": hparams["csv_folder"],
                    "version": hparams["version"],
                    "mix_type": hparams["mix_type"],
                    "train_subset": hparams["train_subset"],
                    "enroll_map": hparams["enroll_map"],
                    "seed": hparams["data_seed"],
                },
            )
        datasets = dataio_prep(hparams)
    except (OSError, ValueError) as error:  # missing, corrupt or bad data
        sys.exit(f"data error: {error}")

    # Training, then the test with the best checkpoint
    extraction = Extraction(
        modules=hparams["modules"],
        opt_class=hparams["optimizer"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    extraction.train_set = datasets["train"]  # enrollments drawn per epoch
    extraction.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["dataloader_opts"],
        valid_loader_kwargs=hparams["eval_dataloader_opts"],
    )
    extraction.evaluate(
        datasets["test"],
        max_key="si-snr",
        test_loader_kwargs=hparams["eval_dataloader_opts"],
    )

    # The pretrained model
    if if_main_process():
        folder = export_model(
            extraction.modules.extractor, hparams, hparams_file
        )
        logger.info("pretrained model written to %s", folder)
