"""``TSEBrain``: trains a target extractor on SI-SNR, validates, checkpoints and tests it.

The recipe entry point that builds it from a YAML is :func:`speechbrain_crossmamba.training.main`
(which re-exports ``TSEBrain``). Two mixins hold what is not about the objective: the run's
clock (:class:`~speechbrain_crossmamba.run_clock.RunClock`) and the test stage's per-utterance
records (:class:`~speechbrain_crossmamba.evaluation.TestRecords`).

Authors
 * speechbrain-crossmamba contributors
"""

import os

import torch

import speechbrain as sb
from speechbrain.dataio.batch import PaddedData
from speechbrain.nnet.losses import get_si_snr_with_pitwrapper
from speechbrain.utils.distributed import if_main_process
from speechbrain_crossmamba.checkpoints import RandomState
from speechbrain_crossmamba.evaluation import TestRecords, si_snr, write_results
from speechbrain_crossmamba.run_clock import RunClock


class TSEBrain(RunClock, TestRecords, sb.Brain):
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

    **Resuming** (the same command again, after a stop or a kill) continues bit-identically
    to a run that was never stopped, mid-epoch and across the switch included: the
    checkpoints keep the weights, the optimizer, the data position and the global random
    generators (:class:`~speechbrain_crossmamba.checkpoints.RandomState`, for dropout).

    Example
    -------
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> from speechbrain.dataio.batch import PaddedBatch
    >>> hp = load_hyperpyyaml(
    ...     open("hparams/models/tse.yaml"), {"N": 16, "num_layers": 1}
    ... )
    >>> brain = TSEBrain(
    ...     {"extractor": hp["extractor"]}, hparams={"clue_key": "enroll_sig"}
    ... )
    >>> item = {
    ...     "id": "a",
    ...     "mix_sig": torch.randn(8000),
    ...     "target_sig": torch.randn(8000),
    ...     "enroll_sig": torch.randn(8000),
    ... }
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

        Arguments
        ---------
        batch : PaddedBatch
            With ``mix_sig`` and the clue entry ``clue_key``.
        stage : sb.Stage
            The current stage.

        Returns
        -------
        torch.Tensor or tuple
            The estimate [B, T] or [B, 2, T]; with the speaker loss, (estimate, logits).
        """
        batch = batch.to(self.device)
        mix, mix_lens = batch.mix_sig
        if self.separating:
            return self.modules.extractor(
                mix, None, lengths=mix_lens, all_outputs=True
            )
        clue, clue_lens = getattr(batch, self.hparams.clue_key), None
        if isinstance(clue, PaddedData):
            clue, clue_lens = clue
        both = (
            stage == sb.Stage.TRAIN
            and self._hparam("rest_loss_weight") > 0
            and self._outputs() > 1
        )
        speaker_loss = stage == sb.Stage.TRAIN and self._speaker_loss_on()
        estimate = self.modules.extractor(
            mix,
            clue,
            lengths=mix_lens,
            clue_lengths=clue_lens,
            all_outputs=both,
            return_clue=speaker_loss,
        )
        if speaker_loss:
            estimate, embedding = estimate
            return estimate, self.modules.speaker_classifier(embedding)
        return estimate

    def _outputs(self):
        extractor = getattr(
            self.modules.extractor, "module", self.modules.extractor
        )
        return getattr(extractor.masknet, "num_spks", 1)

    def _hparam(self, name, default=0):
        value = getattr(self.hparams, name, default)
        return default if value is None else value

    def _lr_decay(self):
        decay = float(self._hparam("lr_decay", 1.0))
        if not 0.0 < decay <= 1.0:
            raise SystemExit(
                f"lr_decay must be in (0, 1] (1.0: off), got {decay}"
            )
        return decay

    def _speaker_loss_on(self):
        return self._hparam("spk_loss_weight") > 0 and hasattr(
            self.modules, "speaker_classifier"
        )

    def _threshold(self, loss):
        """SpeechBrain's ``threshold_byloss``: examples better than the threshold stop pulling."""
        if getattr(self.hparams, "threshold_byloss", False):
            kept = loss[loss > self.hparams.threshold]
            loss = kept if kept.numel() > 0 else loss
        return loss.mean()

    def compute_objectives(self, predictions, batch, stage):
        """Negative SI-SNR (thresholded in training); records metrics when evaluating.

        Arguments
        ---------
        predictions : torch.Tensor or tuple
            The output of :meth:`compute_forward`.
        batch : PaddedBatch
            With ``mix_sig`` and ``target_sig`` (and ``spk_index`` for the speaker loss).
        stage : sb.Stage
            The current stage.

        Returns
        -------
        torch.Tensor
            The loss, a scalar.
        """
        target, lens = batch.target_sig
        mix, _ = batch.mix_sig
        if self.separating:
            return self._separation_objectives(
                predictions, target, mix, lens, stage
            )
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
                loss = loss - self.hparams.rest_loss_weight * si_snr(
                    rest, mix - target, lens
                )
            loss = self._threshold(loss)
            if logits is not None:
                ce = torch.nn.functional.cross_entropy(
                    logits.float(), batch.spk_index.to(logits.device)
                )
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
            return self._threshold(
                get_si_snr_with_pitwrapper(sources, outputs.transpose(1, 2))
            )
        snr = torch.stack(
            [
                si_snr(outputs[:, k], target, lens)
                for k in range(outputs.shape[1])
            ]
        ).amax(0)
        self.valid_snr.append(snr.detach().cpu())
        self.valid_snri.append((snr - si_snr(mix, target, lens)).detach().cpu())
        return -snr.mean()

    def on_stage_start(self, stage, epoch=None):
        """Resets the metric lists; picks the warm-start stage; tells the train set the epoch.

        Arguments
        ---------
        stage : sb.Stage
            The stage that starts.
        epoch : int, optional
            The current epoch.
        """
        self.valid_snr, self.valid_snri, self.test_rows = [], [], []
        self.separating = stage != sb.Stage.TEST and self._in_warm_start(epoch)
        train_set = getattr(self, "_train_set", None)
        if stage == sb.Stage.TRAIN and hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)

    def _in_warm_start(self, epoch):
        """Whether ``epoch`` is one of the separation epochs (``warm_start_epochs``)."""
        warm = int(self._hparam("warm_start_epochs"))
        if self._hparam(
            "init_from", None
        ):  # fine-tuning a trained extractor: no warm start
            return False
        if warm > 0 and self._outputs() < 2:
            raise SystemExit(
                "warm_start_epochs > 0 needs a two-output model: set num_spks: 2"
            )
        return epoch is not None and epoch <= warm

    def fit(self, epoch_counter, train_set, valid_set=None, **kwargs):
        """``sb.Brain.fit``, keeping the train set to give it the epoch (dynamic mixing).

        The run's clock and the ``max_train_minutes`` budget are :class:`RunClock`'s.

        Arguments
        ---------
        epoch_counter, train_set, valid_set, **kwargs
            Those of ``sb.Brain.fit``.
        """
        self._train_set = train_set
        return super().fit(epoch_counter, train_set, valid_set, **kwargs)

    def make_dataloader(
        self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs
    ):
        """``sb.Brain.make_dataloader``, with a random generator of the loader's own.

        Creating a loader's iterator draws its workers' base seed; without a generator of its
        own, from torch's global one. Every checkpoint keeps the global generators
        (:class:`~speechbrain_crossmamba.checkpoints.RandomState`) as they were after its
        last step, and a run resumed in mid-epoch creates its iterator after restoring them:
        that draw would shift every later draw (dropout) by one against the run that was
        never stopped. Its own generator keeps the global draws to the steps alone.

        Arguments
        ---------
        dataset, stage, ckpt_prefix, **loader_kwargs
            Those of ``sb.Brain.make_dataloader``.

        Returns
        -------
        DataLoader
            The loader.
        """
        if "generator" not in loader_kwargs:
            generator = torch.Generator().manual_seed(torch.initial_seed())
            loader_kwargs["generator"] = generator
        return super().make_dataloader(
            dataset, stage, ckpt_prefix, **loader_kwargs
        )

    def on_fit_start(self):
        """Checks ``lr_decay``, then :meth:`RunClock.on_fit_start` (SpeechBrain's, which recovers
        the newest checkpoint, then the run's minutes so far)."""
        self._lr_decay()  # a bad value stops the run before it trains, not after an epoch
        # Under DDP (torchrun), a separation epoch leaves the clue encoder, the fusion points
        # and the speaker classifier without gradients; DDP must be told, or it stops in the
        # first step. It only changes how DDP wraps the modules (a single process is not
        # wrapped at all).
        if self._hparam("warm_start_epochs") > 0 or self._speaker_loss_on():
            self.find_unused_parameters = True
        # the global random generators go into every checkpoint, so a resumed run draws what
        # the uninterrupted run would have (dropout): a resume is bit-identical to no stop
        # (with make_dataloader's own generators)
        if (
            self.checkpointer is not None
            and "random_state" not in self.checkpointer.recoverables
        ):
            self.checkpointer.add_recoverable(
                "random_state", RandomState(), optional_load=True
            )
        super().on_fit_start()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs, steps the scheduler, keeps the best checkpoint, writes ``test_results.csv``.

        Arguments
        ---------
        stage : sb.Stage
            The stage that ends.
        stage_loss : float
            Its average loss.
        epoch : int, optional
            The current epoch.
        """
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss}
            return
        prefix = (
            "sep-" if self.separating else ""
        )  # separation epochs never count as best
        stats = {
            prefix + "si-snr": torch.cat(self.valid_snr).mean().item(),
            prefix + "si-snri": torch.cat(self.valid_snri).mean().item(),
        }
        if stage == sb.Stage.VALID:
            current_lr = self.optimizer.param_groups[0]["lr"]
            if not self.separating:  # the scheduler sees extraction losses only
                current_lr, next_lr = self.hparams.lr_scheduler(
                    [self.optimizer], epoch, stage_loss
                )
                if epoch >= self._hparam(
                    "lr_decay_from", 1
                ):  # a fixed decay on top (as DPRNN's)
                    floor = getattr(self.hparams.lr_scheduler, "lr_min", 0.0)
                    next_lr = max(
                        next_lr * self._lr_decay(), min(floor, next_lr)
                    )
                sb.nnet.schedulers.update_learning_rate(self.optimizer, next_lr)
            meta = {
                "epoch": epoch,
                "lr": current_lr,
                "steps": self.optimizer_step,
            }
            meta["minutes"] = round(
                self.train_minutes(), 2
            )  # the run's, across resumes
            if self._hparam("warm_start_epochs") > 0:
                meta["stage"] = (
                    "separation" if self.separating else "extraction"
                )
            self.hparams.train_logger.log_stats(
                stats_meta=meta,
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(
                meta=stats, max_keys=["si-snr"]
            )
        elif stage == sb.Stage.TEST:
            if if_main_process():
                path = os.path.join(
                    self.hparams.output_folder, "test_results.csv"
                )
                keys = ["si-snr", "si-snri", "sdr", "sdri"]
                optional = (
                    "si-snri-interferer-clue",
                    "pesq",
                    "pesqi",
                    "stoi",
                    "stoii",
                )
                keys += [
                    k for k in optional if any(k in r for r in self.test_rows)
                ]
                stats = write_results(path, self.test_rows, keys)
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current},
                test_stats=stats,
            )
