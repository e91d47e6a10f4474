"""Speaker-verification pretraining of the ECAPA clue (``SpeakerEmbeddingClue``).

``python train_speaker.py hparams/ecapa_synthspeakers.yaml`` trains SpeechBrain's ``ECAPA_TDNN``
on ``Fbank`` with ``AdditiveAngularMargin`` over the training speakers, keeps the checkpoint with
the best EER on the validation speakers, reports the EER on the unseen test speakers and writes
``<output_folder>/embedding_model.ckpt``. A TSE run starts its clue from it with
``--clue_variant=speaker --speaker_embedding_ckpt=<that file>``.

Authors
 * speechbrain-crossmamba contributors
"""

import logging
import os

import torch
from hyperpyyaml import load_hyperpyyaml

import speechbrain as sb
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain_crossmamba.evaluation import speaker_eer

logger = logging.getLogger(__name__)


class SpeakerBrain(sb.Brain):
    """Speaker classification with an angular margin; the EER on held-out speakers as metric.

    Modules: ``embedding_model`` (a ``SpeakerEmbedding``) and ``classifier``
    (SpeechBrain's ECAPA ``Classifier``); ``compute_cost`` is SpeechBrain's ``LogSoftmaxWrapper``
    around ``AdditiveAngularMargin``. After every epoch the EER over every pair of the
    ``eer_csv`` utterances is logged, and the checkpoint with the lowest one is kept.

    Example
    -------
    >>> from speechbrain.dataio.batch import PaddedBatch
    >>> from speechbrain.lobes.models.ECAPA_TDNN import Classifier
    >>> from speechbrain.nnet.losses import (
    ...     AdditiveAngularMargin,
    ...     LogSoftmaxWrapper,
    ... )
    >>> from speechbrain_crossmamba.nnet.clue import SpeakerEmbedding
    >>> modules = {
    ...     "embedding_model": SpeakerEmbedding(channels=16, embedding_size=8),
    ...     "classifier": Classifier(input_size=8, out_neurons=3),
    ... }
    >>> brain = SpeakerBrain(
    ...     modules,
    ...     hparams={
    ...         "compute_cost": LogSoftmaxWrapper(AdditiveAngularMargin())
    ...     },
    ... )
    >>> batch = PaddedBatch(
    ...     [
    ...         {
    ...             "id": str(i),
    ...             "sig": torch.randn(8000),
    ...             "spk": torch.tensor([i]),
    ...         }
    ...         for i in range(3)
    ...     ]
    ... )
    >>> loss = brain.compute_objectives(
    ...     brain.compute_forward(batch, sb.Stage.TRAIN), batch, sb.Stage.TRAIN
    ... )
    >>> bool(loss > 0)
    True
    """

    def compute_forward(self, batch, stage):
        """Speaker scores of a batch.

        Arguments
        ---------
        batch : PaddedBatch
            With ``sig`` (waveforms [B, T] and relative lengths).
        stage : sb.Stage
            The current stage (unused).

        Returns
        -------
        torch.Tensor
            The classifier's cosine scores [B, 1, n_speakers].
        """
        batch = batch.to(self.device)
        wav, lengths = batch.sig
        return self.modules.classifier(
            self.modules.embedding_model(wav, lengths)[:, None]
        )

    def compute_objectives(self, predictions, batch, stage):
        """The angular-margin loss (``compute_cost``).

        Arguments
        ---------
        predictions : torch.Tensor
            The output of :meth:`compute_forward`.
        batch : PaddedBatch
            With ``spk``, the speaker indices [B, 1].
        stage : sb.Stage
            The current stage (unused).

        Returns
        -------
        torch.Tensor
            The loss, a scalar.
        """
        return self.hparams.compute_cost(predictions, batch.spk.data)

    def on_stage_start(self, stage, epoch=None):
        """Reseeds the training set's random crops for the epoch (``set_epoch``).

        Arguments
        ---------
        stage : sb.Stage
            The stage that starts.
        epoch : int, optional
            The current epoch.
        """
        super().on_stage_start(stage, epoch)
        if stage == sb.Stage.TRAIN and hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)

    def eer(self, utterances_csv):
        """EER of the current embedding over every pair of ``utterances_csv``.

        Arguments
        ---------
        utterances_csv : str
            ``ID,duration,wav,spk_id`` CSV (see :func:`speaker_eer`).

        Returns
        -------
        float
            The EER, in [0, 1].
        """
        self.modules.eval()
        model = self.modules.embedding_model
        return speaker_eer(
            lambda wav: model(wav.to(self.device)), utterances_csv
        )

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """After a training epoch: logs the EER on ``eer_csv`` and keeps the best checkpoint.

        Arguments
        ---------
        stage : sb.Stage
            The stage that ends; nothing happens after other stages than TRAIN.
        stage_loss : float
            The average training loss.
        epoch : int, optional
            The current epoch.
        """
        if stage != sb.Stage.TRAIN:
            return
        stats = {"eer": self.eer(self.hparams.eer_csv)}
        lr = self.optimizer.param_groups[0]["lr"]
        self.hparams.train_logger.log_stats(
            {"epoch": epoch, "lr": lr}, {"loss": stage_loss}, stats
        )
        self.checkpointer.save_and_keep_only(meta=stats, min_keys=["eer"])


def save_speaker_embedding(model, path):
    """Writes a ``SpeakerEmbedding``'s weights and configuration (what ``load_speaker_embedding``
    checks before starting a TSE clue from it).

    Arguments
    ---------
    model : SpeakerEmbedding
        The trained embedding.
    path : str
        The file to write.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_crossmamba.nnet.clue import SpeakerEmbedding
    >>> path = os.path.join(tempfile.mkdtemp(), "embedding_model.ckpt")
    >>> save_speaker_embedding(
    ...     SpeakerEmbedding(channels=16, embedding_size=8), path
    ... )
    >>> torch.load(path)["config"]["channels"]
    16
    """
    torch.save({"config": model.config, "state_dict": model.state_dict()}, path)


def load_speaker_embedding(extractor, path):
    """Starts the clue of ``extractor`` from a pretrained speaker embedding (``train_speaker.py``).

    The clue must be a ``SpeakerEmbeddingClue`` (``clue_variant: speaker``) with the sizes and
    sample rate the file was trained with; a wrong clue, a missing or unreadable file or another
    configuration stop the run with one line. A resumed run's checkpoint replaces these
    weights, as it replaces all others.

    Arguments
    ---------
    extractor : TargetExtractor
        The model whose ``clue_encoder`` is a ``SpeakerEmbeddingClue``.
    path : str
        A file written by :func:`save_speaker_embedding`.

    Example
    -------
    >>> import tempfile
    >>> hp = load_hyperpyyaml(
    ...     open("hparams/models/tse.yaml"),
    ...     {
    ...         "N": 16,
    ...         "num_layers": 1,
    ...         "clue_variant": "speaker",
    ...         "ecapa_channels": 16,
    ...         "ecapa_embedding": 8,
    ...     },
    ... )
    >>> path = os.path.join(tempfile.mkdtemp(), "embedding_model.ckpt")
    >>> save_speaker_embedding(
    ...     hp["extractor"].clue_encoder.embedding_model, path
    ... )
    >>> load_speaker_embedding(hp["extractor"], path)
    """
    model = getattr(extractor.clue_encoder, "embedding_model", None)
    if model is None:
        raise SystemExit(
            "speaker_embedding_ckpt needs the ECAPA clue: set clue_variant: speaker"
        )
    if not os.path.isfile(path):
        raise SystemExit(
            f"speaker_embedding_ckpt: no such file {path} (train_speaker.py writes it)"
        )
    try:
        saved = torch.load(path, map_location="cpu")
        config, state = saved["config"], saved["state_dict"]
    except Exception as error:  # noqa: BLE001 - any unreadable file gets one line
        raise SystemExit(
            f"speaker_embedding_ckpt {path} is not a train_speaker.py file: {error!r}"[
                :300
            ]
        )
    if config != model.config:
        raise SystemExit(
            f"speaker_embedding_ckpt {path} was trained with {config}; the clue is {model.config}"
        )
    model.load_state_dict(state)
    logger.info("clue encoder started from the speaker embedding %s", path)


def main(argv):
    """The recipe: trains, keeps the best-EER checkpoint, writes ``embedding_model.ckpt``.

    Arguments
    ---------
    argv : list of str
        The command line: the hparams file, then SpeechBrain options and overrides.

    Returns
    -------
    SpeakerBrain
        The trained brain, at its best checkpoint.
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    try:
        with open(hparams_file, encoding="utf-8") as fin:
            hparams = load_hyperpyyaml(fin, overrides)
    except (OSError, ValueError) as error:
        raise SystemExit(f"{hparams_file}: {error}") from None
    sb.utils.distributed.ddp_init_group(run_opts)
    sb.create_experiment_directory(
        hparams["output_folder"], hparams_file, overrides
    )
    try:
        files = (
            run_on_main(hparams["prepare_data"]) or hparams["prepare_data"]()
        )
        train_set = hparams["train_set"](files["train_utts"])
    except (OSError, ValueError, ImportError) as error:
        raise SystemExit(f"data error: {error}") from None
    if len(train_set.speakers) != hparams["n_train_speakers"]:
        raise SystemExit(
            f"the training utterances have {len(train_set.speakers)} speakers; the "
            f"classifier has n_train_speakers: {hparams['n_train_speakers']}"
        )
    hparams["eer_csv"] = files["valid_utts"]
    brain = SpeakerBrain(
        hparams["modules"],
        hparams["optimizer"],
        hparams,
        run_opts,
        hparams["checkpointer"],
    )
    brain.train_set = train_set
    brain.fit(
        hparams["epoch_counter"],
        train_set,
        train_loader_kwargs=hparams["dataloader_opts"],
    )
    brain.checkpointer.recover_if_possible(min_key="eer")
    test_eer = brain.eer(files["test_utts"])
    hparams["train_logger"].log_stats(
        {"best checkpoint": "lowest valid EER"}, test_stats={"eer": test_eer}
    )
    if if_main_process():
        path = os.path.join(hparams["output_folder"], "embedding_model.ckpt")
        save_speaker_embedding(brain.hparams.embedding_model, path)
        print(
            f"test EER {100 * test_eer:.1f} %; speaker embedding written to {path}"
        )
    return brain
