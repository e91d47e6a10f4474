"""Training and evaluation of target extractors: ``TSEBrain`` and the recipe entry point.

The top-level ``train.py`` (``hparams/*.yaml``) is these few
lines (the recipes in ``recipes/<Dataset>/tse/`` hold their own ``Brain`` and data pipeline, in
SpeechBrain's form, and use this package's layers, models, data and metrics)::

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

``TSEBrain`` lives in :mod:`.tse_brain` and is re-exported here, as is ``Checkpointer``
(YAMLs name ``speechbrain_crossmamba.training.Checkpointer``).

Authors
 * speechbrain-crossmamba contributors
"""

import logging
import os

from hyperpyyaml import load_hyperpyyaml

import speechbrain as sb
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain_crossmamba.checkpoints import (  # noqa: F401  (YAMLs: training.Checkpointer)
    Checkpointer,
    load_pretrained_extractor,
)
from speechbrain_crossmamba.dataio.tse_data import check_csv
from speechbrain_crossmamba.export import export_pretrained
from speechbrain_crossmamba.speaker_training import load_speaker_embedding
from speechbrain_crossmamba.tse_brain import TSEBrain

logger = logging.getLogger(__name__)


def prepare_datasets(hparams):
    """Prepares the data (on the main process) and builds the train, valid and test sets.

    Every audio file the CSVs name is checked first (:func:`~.dataio.tse_data.check_csv`): a
    missing or corrupt one stops the run with its name, unless ``skip_bad_files`` is set; the
    rows of all bad files are given to the train set as ``exclude``. A ``train_inputs`` entry
    whose prepared file is None (an optional input, e.g. noise) is passed as None.

    Arguments
    ---------
    hparams : dict
        The loaded recipe YAML.

    Returns
    -------
    dict
        ``train``, ``valid`` and ``test`` datasets.
    """
    files = run_on_main(hparams["prepare_data"]) or hparams["prepare_data"]()
    skip = hparams.get("skip_bad_files", False)
    rate = hparams["sample_rate"]
    train_kwargs, excluded = {}, set()
    for argument, name in hparams.get("train_inputs", {}).items():
        train_kwargs[argument] = files.get(name)
        if (
            train_kwargs[argument] is not None
        ):  # an optional input (e.g. no noise in mix_clean)
            excluded |= check_csv(files[name], rate, skip)
    if excluded:
        train_kwargs["exclude"] = excluded
    datasets = {"train": hparams["train_set"](**train_kwargs)}
    for split in ("valid", "test"):
        bad = check_csv(files[split], rate, skip)
        kwargs = {"exclude": bad}
        if split == "test" and hparams.get(
            "interferer_clue_test"
        ):  # does the clue matter?
            kwargs["interferer_utterances"] = files["test_utts"]
        datasets[split] = hparams["eval_set"](files[split], **kwargs)
    return datasets


def main(argv):
    """The recipe: ``python train.py hparams/<config>.yaml``, then ``--key=value`` overrides.

    Trains with validation and checkpoints, evaluates the best checkpoint on the test set
    (``test_results.csv``, ``examples/``) and writes ``<output_folder>/pretrained/``. A YAML
    that does not load (e.g. ``data_folder`` not given) or data that fail preparation or the
    file checks stop the run with one line (``SystemExit``) naming the problem.

    Arguments
    ---------
    argv : list of str
        The command line: the hparams file, then SpeechBrain options and overrides.

    Returns
    -------
    TSEBrain
        The trained brain.
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    try:
        with open(hparams_file, encoding="utf-8") as fin:
            hparams = load_hyperpyyaml(fin, overrides)
    except (
        OSError,
        ValueError,
    ) as error:  # e.g. a !PLACEHOLDER data_folder not given
        raise SystemExit(f"{hparams_file}: {error}") from None
    sb.utils.distributed.ddp_init_group(run_opts)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    try:
        datasets = prepare_datasets(hparams)
    except (
        OSError,
        ValueError,
        ImportError,
    ) as error:  # missing, corrupt or malformed data
        raise SystemExit(f"data error: {error}") from None
    try:
        brain = TSEBrain(
            modules=hparams["modules"],
            opt_class=hparams["optimizer"],
            hparams=hparams,
            run_opts=run_opts,
            checkpointer=hparams["checkpointer"],
        )
    except (
        ValueError
    ) as error:  # SpeechBrain's run-option checks, e.g. fp16 on CPU
        raise SystemExit(f"run options: {error}") from None
    classes = getattr(hparams.get("speaker_classifier"), "out_features", None)
    speakers = len(getattr(datasets["train"], "speaker_index", ()))
    if (
        classes is not None
        and hparams.get("spk_loss_weight", 0) > 0
        and speakers > classes
    ):
        raise SystemExit(
            f"the training data have {speakers} speakers but the speaker classifier "
            f"{classes} classes: set --n_speaker_classes={speakers} or more"
        )
    if hparams.get("init_from"):
        load_pretrained_extractor(
            hparams["modules"]["extractor"], hparams["init_from"]
        )
    if hparams.get("speaker_embedding_ckpt"):
        load_speaker_embedding(
            hparams["modules"]["extractor"], hparams["speaker_embedding_ckpt"]
        )
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["dataloader_opts"],
        valid_loader_kwargs=hparams["eval_dataloader_opts"],
    )
    brain.evaluate(
        datasets["test"],
        max_key="si-snr",
        test_loader_kwargs=hparams["eval_dataloader_opts"],
    )
    if if_main_process():
        model_file = os.path.join(
            os.path.dirname(os.path.abspath(hparams_file)),
            hparams["model_file"],
        )
        folder = os.path.join(hparams["output_folder"], "pretrained")
        export_pretrained(
            brain.modules.extractor,
            hparams["model"],
            model_file,
            folder,
            extra=hparams.get("pretrained_extra"),
        )
        logger.info("pretrained model written to %s", folder)
    return brain
