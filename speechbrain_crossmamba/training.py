"""Training and evaluation of target extractors: ``TSEBrain`` and the recipe entry point.

Every recipe (``train.py`` at the top level, ``recipes/*/train.py``) is the same few lines::

    from speechbrain_crossmamba.training import main
    main(sys.argv[1:])

and the YAML says everything else:

- ``prepare_data``: a function returning ``{name: csv path}`` (e.g. ``prepare_synth_speakers``);
- ``train_set``: a dataset factory; ``train_inputs`` maps its arguments to prepared CSVs
  (``{utterances_csv: train_utts}``), or ``{}`` for procedural data;
- ``eval_set``: the mixture-CSV factory for ``valid`` and ``test`` (``tse_data.mixture_dataset``);
- ``clue_key``: ``enroll_sig`` or ``label``: the batch entry given to the model as the clue;
- ``modules.extractor``: a :class:`~speechbrain_crossmamba.lobes.models.extractor.TargetExtractor`
  included from ``model_file`` (``hparams/models/tse.yaml``).

Authors
 * speechbrain-crossmamba contributors
"""

import logging
import os
import time

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.core import INTRA_EPOCH_CKPT_FLAG
from speechbrain.dataio.batch import PaddedData
from speechbrain.nnet.losses import get_si_snr_with_pitwrapper
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_crossmamba.checkpoints import Checkpointer, load_pretrained_extractor  # YAMLs: training.Checkpointer
from speechbrain_crossmamba.dataio.tse_data import check_csv
from speechbrain_crossmamba.evaluation import (
    perceptual_metrics,
    save_example,
    si_snr,
    utterance_metrics,
    write_results,
)
from speechbrain_crossmamba.export import export_pretrained
from speechbrain_crossmamba.speaker_training import load_speaker_embedding

logger = logging.getLogger(__name__)


class TSEBrain(sb.Brain):
    """Trains a target extractor on SI-SNR, validates, checkpoints and writes test results.

    The loss is the negative SI-SNR of the estimate, with SpeechBrain's separation-recipe loss
    thresholding (``threshold_byloss``, ``threshold``: examples already better than the
    threshold stop pulling). Gradient clipping (``max_grad_norm``), mixed precision
    (``--precision=bf16``), intra-epoch checkpoints (``ckpt_interval_minutes``), resuming, DDP
    and progress bars are the ``sb.Brain`` machinery. ``lr_scheduler`` is SpeechBrain's
    ``ReduceLROnPlateau`` on the validation loss; on top of it, after epoch ``lr_decay_from``
    and after every later extraction epoch, the learning rate is multiplied by ``lr_decay``
    (1.0: off; the optimizer keeps the rate, so it survives a resume). Checkpoints keep the
    best validation SI-SNR.

    **Warm start** (``warm_start_epochs: E`` > 0, with a two-output model, ``num_spks: 2``):
    the first ``E`` epochs train plain separation, clue unused, with SpeechBrain's PIT
    SI-SNR over the target and the rest of the mixture (``mix - target``). The later epochs
    train extraction: output 0 is bound to the target, and with ``rest_loss_weight`` > 0
    output 1 keeps learning the rest (which is what made that stage learn, docs/training.md).
    A single-output TSE objective does not learn to separate before it can tell whom to
    keep; this breaks that plateau. Separation epochs log
    ``sep-si-snri`` (the better of the two outputs) and never count as the best checkpoint;
    the learning-rate scheduler starts at the switch. The stage follows from the epoch, so a
    resumed run continues in the right one.

    Example
    -------
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> from speechbrain.dataio.batch import PaddedBatch
    >>> hp = load_hyperpyyaml(open("hparams/models/tse.yaml"), {"N": 16, "num_layers": 1})
    >>> brain = TSEBrain({"extractor": hp["extractor"]}, hparams={"clue_key": "enroll_sig"})
    >>> item = {"id": "a", "mix_sig": torch.randn(8000), "target_sig": torch.randn(8000),
    ...         "enroll_sig": torch.randn(8000)}
    >>> batch = PaddedBatch([item, item])
    >>> brain.compute_forward(batch, sb.Stage.VALID).shape
    torch.Size([2, 8000])
    """

    separating = False  # set per stage by on_stage_start

    def compute_forward(self, batch, stage):
        """Estimates the target from ``mix_sig`` and the clue ``batch[clue_key]``.

        In the separation stage of a warm start, returns both outputs without a clue,
        [B, 2, T]. In training, with ``rest_loss_weight`` > 0, returns [B, 2, T] (target,
        rest); with a ``speaker_classifier`` module and ``spk_loss_weight > 0``, also the
        classifier's logits on the clue embedding (the SpEx+ auxiliary loss).
        """
        batch = batch.to(self.device)
        mix, mix_lens = batch.mix_sig
        if self.separating:
            return self.modules.extractor(mix, None, lengths=mix_lens, all_outputs=True)
        clue, clue_lens = getattr(batch, self.hparams.clue_key), None
        if isinstance(clue, PaddedData):
            clue, clue_lens = clue
        both = stage == sb.Stage.TRAIN and self._hparam("rest_loss_weight") > 0 and self._outputs() > 1
        speaker_loss = stage == sb.Stage.TRAIN and self._speaker_loss_on()
        estimate = self.modules.extractor(
            mix, clue, lengths=mix_lens, clue_lengths=clue_lens, all_outputs=both, return_clue=speaker_loss
        )
        if speaker_loss:
            estimate, embedding = estimate
            return estimate, self.modules.speaker_classifier(embedding)
        return estimate

    def _outputs(self):
        extractor = getattr(self.modules.extractor, "module", self.modules.extractor)
        return getattr(extractor.masknet, "num_spks", 1)

    def _hparam(self, name, default=0):
        value = getattr(self.hparams, name, default)
        return default if value is None else value

    def _lr_decay(self):
        decay = float(self._hparam("lr_decay", 1.0))
        if not 0.0 < decay <= 1.0:
            raise SystemExit(f"lr_decay must be in (0, 1] (1.0: off), got {decay}")
        return decay

    def _speaker_loss_on(self):
        return self._hparam("spk_loss_weight") > 0 and hasattr(self.modules, "speaker_classifier")

    def _threshold(self, loss):
        """SpeechBrain's ``threshold_byloss``: examples better than the threshold stop pulling."""
        if getattr(self.hparams, "threshold_byloss", False):
            kept = loss[loss > self.hparams.threshold]
            loss = kept if kept.numel() > 0 else loss
        return loss.mean()

    def compute_objectives(self, predictions, batch, stage):
        """Negative SI-SNR (thresholded in training); records metrics when evaluating."""
        target, lens = batch.target_sig
        mix, _ = batch.mix_sig
        if self.separating:
            return self._separation_objectives(predictions, target, mix, lens, stage)
        logits = None
        if isinstance(predictions, tuple):
            predictions, logits = predictions
        rest = None
        if predictions.dim() == 3:
            predictions, rest = predictions[:, 0], predictions[:, 1]
        snr = si_snr(predictions, target, lens)
        if stage == sb.Stage.TRAIN:
            loss = -snr
            if rest is not None:
                loss = loss - self.hparams.rest_loss_weight * si_snr(rest, mix - target, lens)
            loss = self._threshold(loss)
            if logits is not None:
                ce = torch.nn.functional.cross_entropy(logits.float(), batch.spk_index.to(logits.device))
                loss = loss + self.hparams.spk_loss_weight * ce
            return loss
        self.valid_snr.append(snr.detach().cpu())
        self.valid_snri.append((snr - si_snr(mix, target, lens)).detach().cpu())
        if stage == sb.Stage.TEST:
            self._record_test(predictions, batch)
        return -snr.mean()

    def _separation_objectives(self, outputs, target, mix, lens, stage):
        """PIT SI-SNR over (target, rest); valid metric: the target's better output."""
        if stage == sb.Stage.TRAIN:
            sources = torch.stack([target, mix - target], dim=-1)
            return self._threshold(get_si_snr_with_pitwrapper(sources, outputs.transpose(1, 2)))
        snr = torch.stack([si_snr(outputs[:, k], target, lens) for k in range(outputs.shape[1])]).amax(0)
        self.valid_snr.append(snr.detach().cpu())
        self.valid_snri.append((snr - si_snr(mix, target, lens)).detach().cpu())
        return -snr.mean()

    def _record_test(self, predictions, batch):
        target, lens = batch.target_sig
        mix, _ = batch.mix_sig
        clue = getattr(batch, self.hparams.clue_key)
        wrong = []  # the estimate given the interferer's enrollment instead (interferer_clue_test)
        if hasattr(batch, "interf_enroll_sig"):
            other, other_lens = batch.interf_enroll_sig
            with torch.no_grad():
                wrong = self.modules.extractor(mix, other, lengths=lens, clue_lengths=other_lens).float()
        for i, uid in enumerate(batch.id):
            n = int(torch.round(lens[i] * target.shape[1]))
            est = predictions[i, :n].float()
            row = {"ID": uid, **utterance_metrics(est, target[i, :n], mix[i, :n])}
            if self.hparams.clue_key == "enroll_sig":  # speech: PESQ and STOI, where installed
                row.update(perceptual_metrics(est, target[i, :n], mix[i, :n], self.hparams.sample_rate))
            if i < len(wrong):  # SI-SNRi only: the mixture's SI-SNR is already in the row
                mix_snr = row["si-snr"] - row["si-snri"]
                wrong_snr = si_snr(wrong[i, :n][None], target[i, :n].float()[None]).item()
                row["si-snri-interferer-clue"] = wrong_snr - mix_snr
            self.test_rows.append(row)
            if len(self.test_rows) <= getattr(self.hparams, "n_examples", 0) and if_main_process():
                signals = {"mixture": mix[i, :n], "estimate": est, "target": target[i, :n]}
                title = f"{uid}: SI-SNRi {row['si-snri']:.1f} dB"
                if self.hparams.clue_key == "enroll_sig":
                    m = int(torch.round(clue.lengths[i] * clue.data.shape[1]))
                    signals["enrollment"] = clue.data[i, :m]
                else:
                    names = getattr(self.hparams, "classes", None) or range(clue.data.shape[1])
                    title += ", clue " + " ".join(str(c) for c, on in zip(names, clue.data[i]) if on > 0)
                folder = os.path.join(self.hparams.output_folder, "examples")
                save_example(folder, uid, signals, self.hparams.sample_rate, title)

    def on_stage_start(self, stage, epoch=None):
        """Resets the metric lists; picks the warm-start stage; tells the train set the epoch."""
        self.valid_snr, self.valid_snri, self.test_rows = [], [], []
        self.separating = stage != sb.Stage.TEST and self._in_warm_start(epoch)
        train_set = getattr(self, "_train_set", None)
        if stage == sb.Stage.TRAIN and hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)

    def _in_warm_start(self, epoch):
        """Whether ``epoch`` is one of the separation epochs (``warm_start_epochs``)."""
        warm = int(self._hparam("warm_start_epochs"))
        if self._hparam("init_from", None):  # fine-tuning a trained extractor: no warm start
            return False
        if warm > 0 and self._outputs() < 2:
            raise SystemExit("warm_start_epochs > 0 needs a two-output model: set num_spks: 2")
        return epoch is not None and epoch <= warm

    def fit(self, epoch_counter, train_set, valid_set=None, **kwargs):
        """``sb.Brain.fit``, keeping the train set to give it the epoch (dynamic mixing).

        With ``max_train_minutes`` in the hparams, no epoch starts once the run has trained that
        many minutes (equal wall-clock budgets, as in ``benchmarks/paper_table.py``). The minutes
        are the run's, not the process's: every checkpoint keeps them (``train_minutes`` in its
        meta), so a killed and resumed run logs and spends one budget, and the epoch a kill
        interrupted is finished. A run that has not trained yet trains its first epoch, whatever
        the budget (the setup before it is not training).
        """
        self._train_set = train_set
        self._fit_start, self._minutes_before, self._first_epoch_due = time.monotonic(), 0.0, True
        if isinstance(self.checkpointer, Checkpointer):
            self.checkpointer.clock, self.checkpointer.loaded = self.train_minutes, None
        minutes = getattr(self.hparams, "max_train_minutes", None)
        if minutes is not None:
            epoch_counter = _until(
                epoch_counter, 60.0 * float(minutes), lambda: 60.0 * self.train_minutes(), lambda: self._first_epoch_due
            )
        return super().fit(epoch_counter, train_set, valid_set, **kwargs)

    def on_fit_start(self):
        """SpeechBrain's (which recovers the newest checkpoint), then the run's minutes so far,
        from the meta of the checkpoint it loaded."""
        self._lr_decay()  # a bad value stops the run before it trains, not after an epoch
        super().on_fit_start()
        loaded = getattr(self.checkpointer, "loaded", None)
        if loaded is not None:
            self._minutes_before = float(loaded.meta.get("train_minutes", 0.0))
            self._first_epoch_due = INTRA_EPOCH_CKPT_FLAG in loaded.meta  # a killed epoch is finished

    def train_minutes(self):
        """Minutes of training of this run: those of its checkpoint plus this process's fit."""
        return self._minutes_before + (time.monotonic() - self._fit_start) / 60.0

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs, steps the scheduler, keeps the best checkpoint, writes ``test_results.csv``."""
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss}
            return
        prefix = "sep-" if self.separating else ""  # separation epochs never count as best
        stats = {
            prefix + "si-snr": torch.cat(self.valid_snr).mean().item(),
            prefix + "si-snri": torch.cat(self.valid_snri).mean().item(),
        }
        if stage == sb.Stage.VALID:
            current_lr = self.optimizer.param_groups[0]["lr"]
            if not self.separating:  # the scheduler sees extraction losses only
                current_lr, next_lr = self.hparams.lr_scheduler([self.optimizer], epoch, stage_loss)
                if epoch >= self._hparam("lr_decay_from", 1):  # a fixed decay on top (as DPRNN's)
                    floor = getattr(self.hparams.lr_scheduler, "lr_min", 0.0)
                    next_lr = max(next_lr * self._lr_decay(), min(floor, next_lr))
                sb.nnet.schedulers.update_learning_rate(self.optimizer, next_lr)
            meta = {"epoch": epoch, "lr": current_lr, "steps": self.optimizer_step}
            meta["minutes"] = round(self.train_minutes(), 2)  # the run's, across resumes
            if self._hparam("warm_start_epochs") > 0:
                meta["stage"] = "separation" if self.separating else "extraction"
            self.hparams.train_logger.log_stats(
                stats_meta=meta,
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(meta=stats, max_keys=["si-snr"])
        elif stage == sb.Stage.TEST:
            if if_main_process():
                path = os.path.join(self.hparams.output_folder, "test_results.csv")
                keys = ["si-snr", "si-snri", "sdr", "sdri"]
                optional = ("si-snri-interferer-clue", "pesq", "pesqi", "stoi", "stoii")
                keys += [k for k in optional if any(k in r for r in self.test_rows)]
                stats = write_results(path, self.test_rows, keys)
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )


def _until(epochs, seconds, elapsed=None, finish_current=lambda: False):
    """The epochs of ``epochs`` that start before ``elapsed()`` reaches ``seconds``.

    ``elapsed`` defaults to the seconds since the first epoch was asked for. When
    ``finish_current()`` is true, the first epoch runs whatever the time (a resumed run
    finishes the epoch a kill interrupted).

    Example
    -------
    >>> list(_until(iter([1, 2, 3]), 60, elapsed=iter([0, 30, 61]).__next__))
    [1, 2]
    >>> list(_until(iter([4, 5]), 60, elapsed=lambda: 90)), list(_until(iter([4, 5]), 60, lambda: 90, lambda: True))
    ([], [4])
    """
    if elapsed is None:
        start = time.monotonic()
        elapsed = lambda: time.monotonic() - start  # noqa: E731
    for i, epoch in enumerate(epochs):
        if elapsed() >= seconds and not (i == 0 and finish_current()):
            return
        yield epoch


def prepare_datasets(hparams):
    """Prepares the data (on the main process) and builds the train, valid and test sets.

    Every audio file the CSVs name is checked first (:func:`~.dataio.tse_data.check_csv`): a
    missing or corrupt one stops the run with its name, unless ``skip_bad_files`` is set; the
    rows of all bad files are given to the train set as ``exclude``. A ``train_inputs`` entry
    whose prepared file is None (an optional input, e.g. noise) is passed as None.
    """
    files = run_on_main(hparams["prepare_data"]) or hparams["prepare_data"]()
    skip = hparams.get("skip_bad_files", False)
    rate = hparams["sample_rate"]
    train_kwargs, excluded = {}, set()
    for argument, name in hparams.get("train_inputs", {}).items():
        train_kwargs[argument] = files.get(name)
        if train_kwargs[argument] is not None:  # an optional input (e.g. no noise in mix_clean)
            excluded |= check_csv(files[name], rate, skip)
    if excluded:
        train_kwargs["exclude"] = excluded
    datasets = {"train": hparams["train_set"](**train_kwargs)}
    for split in ("valid", "test"):
        bad = check_csv(files[split], rate, skip)
        kwargs = {"exclude": bad}
        if split == "test" and hparams.get("interferer_clue_test"):  # does the clue matter?
            kwargs["interferer_utterances"] = files["test_utts"]
        datasets[split] = hparams["eval_set"](files[split], **kwargs)
    return datasets


def main(argv):
    """The recipe: ``python train.py hparams/<config>.yaml [--key=value ...]``.

    Trains with validation and checkpoints, evaluates the best checkpoint on the test set
    (``test_results.csv``, ``examples/``) and writes ``<output_folder>/pretrained/``. A YAML
    that does not load (e.g. ``data_folder`` not given) or data that fail preparation or the
    file checks stop the run with one line (``SystemExit``) naming the problem.
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    try:
        with open(hparams_file, encoding="utf-8") as fin:
            hparams = load_hyperpyyaml(fin, overrides)
    except (OSError, ValueError) as error:  # e.g. a !PLACEHOLDER data_folder not given
        raise SystemExit(f"{hparams_file}: {error}") from None
    sb.utils.distributed.ddp_init_group(run_opts)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    try:
        datasets = prepare_datasets(hparams)
    except (OSError, ValueError, ImportError) as error:  # missing, corrupt or malformed data
        raise SystemExit(f"data error: {error}") from None
    brain = TSEBrain(
        modules=hparams["modules"],
        opt_class=hparams["optimizer"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    classes = getattr(hparams.get("speaker_classifier"), "out_features", None)
    speakers = len(getattr(datasets["train"], "speaker_index", ()))
    if classes is not None and hparams.get("spk_loss_weight", 0) > 0 and speakers > classes:
        raise SystemExit(f"the training data have {speakers} speakers but the speaker classifier "
                         f"{classes} classes: set --n_speaker_classes={speakers} or more")
    if hparams.get("init_from"):
        load_pretrained_extractor(hparams["modules"]["extractor"], hparams["init_from"])
    if hparams.get("speaker_embedding_ckpt"):
        load_speaker_embedding(hparams["modules"]["extractor"], hparams["speaker_embedding_ckpt"])
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["dataloader_opts"],
        valid_loader_kwargs=hparams["eval_dataloader_opts"],
    )
    brain.evaluate(datasets["test"], max_key="si-snr", test_loader_kwargs=hparams["eval_dataloader_opts"])
    if if_main_process():
        model_file = os.path.join(os.path.dirname(os.path.abspath(hparams_file)), hparams["model_file"])
        folder = os.path.join(hparams["output_folder"], "pretrained")
        export_pretrained(brain.modules.extractor, hparams["model"], model_file, folder,
                          extra=hparams.get("pretrained_extra"))
        logger.info("pretrained model written to %s", folder)
    return brain
