"""``Checkpointer``: SpeechBrain's checkpointer, safe against a kill in the middle of a save;
``load_pretrained_extractor``: a ``pretrained/`` folder's weights as a run's start (``init_from``).

The recipes name it ``speechbrain_crossmamba.training.Checkpointer`` (imported there).

Authors
 * speechbrain-crossmamba contributors
"""

import logging
import os
import shutil

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process

logger = logging.getLogger(__name__)


class Checkpointer(sb.utils.checkpoints.Checkpointer):
    """SpeechBrain's ``Checkpointer``, safe against a kill in the middle of a save.

    SpeechBrain writes a checkpoint's meta file first and its parameter files after it, so a
    process killed while saving leaves a checkpoint that looks complete and then fails to load
    (``EOFError`` from ``torch.load``). This one writes a ``COMPLETE`` marker after the last
    file, and ignores (and removes) checkpoints without it: a kill loses at most the
    checkpoint interval.

    Example
    -------
    >>> import tempfile, torch
    >>> layer = torch.nn.Linear(2, 2)
    >>> ckpt = Checkpointer(tempfile.mkdtemp(), {"layer": layer})
    >>> saved = ckpt.save_checkpoint()
    >>> os.remove(os.path.join(saved.path, Checkpointer.MARKER))  # as if killed mid-save
    >>> ckpt.list_checkpoints()
    []
    """

    MARKER = "COMPLETE"
    clock = None  # optional callable: the run's training minutes, kept in every checkpoint's meta
    loaded = None  # the checkpoint last loaded (its meta holds the minutes trained before it)

    def save_checkpoint(self, meta=None, *args, **kwargs):
        meta = dict(meta or {})
        if self.clock is not None:
            meta["train_minutes"] = round(float(self.clock()), 4)
        saved = super().save_checkpoint(meta, *args, **kwargs)
        if saved is not None:
            open(os.path.join(saved.path, self.MARKER), "w").close()
        return saved

    def load_checkpoint(self, checkpoint):
        self.loaded = checkpoint
        return super().load_checkpoint(checkpoint)

    def list_checkpoints(self):
        checkpoints, complete = super().list_checkpoints(), []
        for ckpt in checkpoints:
            if os.path.exists(os.path.join(ckpt.path, self.MARKER)):
                complete.append(ckpt)
            elif if_main_process():
                logger.warning("Removing the incomplete checkpoint %s (killed mid-save)", ckpt.path)
                shutil.rmtree(ckpt.path, ignore_errors=True)
        return complete


def load_pretrained_extractor(extractor, folder):
    """Loads ``folder/extractor.ckpt`` (a ``pretrained/`` folder) into ``extractor``, strictly.

    A resumed run then loads its own checkpoint over it, so fine-tuning resumes as any run.

    Example
    -------
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> hp = load_hyperpyyaml(open("hparams/models/tse.yaml"), {"N": 16, "num_layers": 1})
    >>> load_pretrained_extractor(hp["extractor"], "/no/such/folder")
    Traceback (most recent call last):
    ...
    SystemExit: init_from: no extractor.ckpt in /no/such/folder
    """
    path = os.path.join(folder, "extractor.ckpt")
    if not os.path.isfile(path):
        raise SystemExit(f"init_from: no extractor.ckpt in {folder}")
    try:
        extractor.load_state_dict(torch.load(path, map_location="cpu"))
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise SystemExit(f"init_from: {path} does not fit this model ({first})") from None
    logger.info("extractor started from %s", path)
