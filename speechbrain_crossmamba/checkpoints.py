"""``Checkpointer``: SpeechBrain's checkpointer, safe against a kill in the middle of a save;
``RandomState``: the global random generators as a recoverable, so a resumed run draws what the
run it continues would have; ``load_pretrained_extractor``: a ``pretrained/`` folder's weights as
a run's start (``init_from``).

The recipes name it ``speechbrain_crossmamba.training.Checkpointer`` (imported there).

Authors
 * speechbrain-crossmamba contributors
"""

import logging
import os
import random
import shutil

import numpy as np
import torch

import speechbrain as sb
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
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
    >>> os.remove(
    ...     os.path.join(saved.path, Checkpointer.MARKER)
    ... )  # as if killed mid-save
    >>> ckpt.list_checkpoints()
    []
    """

    MARKER = "COMPLETE"
    clock = None  # optional callable: the run's training minutes, kept in every checkpoint's meta
    loaded = None  # the checkpoint last loaded (its meta holds the minutes trained before it)

    def save_checkpoint(self, meta=None, *args, **kwargs):
        """Saves a checkpoint as SpeechBrain does, then writes its ``COMPLETE`` marker.

        Arguments
        ---------
        meta : dict, optional
            Added to the meta file, with ``train_minutes`` when ``clock`` is set.
        *args, **kwargs
            Passed to SpeechBrain's ``save_checkpoint``.

        Returns
        -------
        Checkpoint or None
            The saved checkpoint (None on processes that do not save).
        """
        meta = dict(meta or {})
        if self.clock is not None:
            meta["train_minutes"] = round(float(self.clock()), 4)
        saved = super().save_checkpoint(meta, *args, **kwargs)
        if saved is not None:
            open(os.path.join(saved.path, self.MARKER), "w").close()
        return saved

    def load_checkpoint(self, checkpoint):
        """Loads ``checkpoint`` and remembers it as ``loaded``.

        Arguments
        ---------
        checkpoint : Checkpoint
            The checkpoint to load.
        """
        self.loaded = checkpoint
        return super().load_checkpoint(checkpoint)

    def list_checkpoints(self):
        """The complete checkpoints; incomplete ones are removed (on the main process).

        Returns
        -------
        list of Checkpoint
            The checkpoints that have the ``COMPLETE`` marker.
        """
        checkpoints, complete = super().list_checkpoints(), []
        for ckpt in checkpoints:
            if os.path.exists(os.path.join(ckpt.path, self.MARKER)):
                complete.append(ckpt)
            elif if_main_process():
                logger.warning(
                    "Removing the incomplete checkpoint %s (killed mid-save)",
                    ckpt.path,
                )
                shutil.rmtree(ckpt.path, ignore_errors=True)
        return complete


@register_checkpoint_hooks
class RandomState:
    """The global random generators (Python's, NumPy's, torch's on the CPU and on every CUDA
    device) as a checkpoint recoverable.

    SpeechBrain seeds them once when a run starts, and a resumed run starts again from that
    seed: whatever training draws from them (dropout masks, above all) would then differ from
    the run that was never stopped. Saved in every checkpoint and restored with it, a resumed
    run is bit-identical to an uninterrupted one. A checkpoint saved without it (by an older
    version) loads as before (``TSEBrain`` registers it with ``optional_load``).

    Example
    -------
    >>> import tempfile
    >>> state = RandomState()
    >>> path = os.path.join(tempfile.mkdtemp(), "rng.ckpt")
    >>> _ = torch.manual_seed(0)
    >>> state.save(path)
    >>> first = torch.rand(3)
    >>> state.load(path, end_of_epoch=False)
    >>> torch.equal(torch.rand(3), first)
    True
    """

    @mark_as_saver
    def save(self, path):
        """Writes the generators' states to ``path``.

        Arguments
        ---------
        path : str or pathlib.Path
            The file to write.
        """
        version, keys, gauss = random.getstate()
        kind, mt, pos, has_gauss, cached = np.random.get_state()
        state = {
            "python": [version, torch.tensor(keys), gauss],
            "numpy": [kind, torch.from_numpy(mt.astype(np.int64)), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
        }  # fmt: skip
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(state, path)

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        """Restores the generators' states from ``path``.

        Arguments
        ---------
        path : str or pathlib.Path
            A file written by :meth:`save`.
        end_of_epoch : bool
            Unused (SpeechBrain's loader signature).
        """
        state = torch.load(path, map_location="cpu")
        version, keys, gauss = state["python"]
        random.setstate((version, tuple(keys.tolist()), gauss))
        kind, mt, pos, has_gauss, cached = state["numpy"]
        np.random.set_state(
            (kind, mt.numpy().astype(np.uint32), pos, has_gauss, cached)
        )
        torch.set_rng_state(state["torch"])
        cuda = state.get("cuda")
        if (
            cuda is not None
            and torch.cuda.is_available()
            and len(cuda) == torch.cuda.device_count()
        ):
            torch.cuda.set_rng_state_all(cuda)


def load_pretrained_extractor(extractor, folder):
    """Loads ``folder/extractor.ckpt`` (a ``pretrained/`` folder) into ``extractor``.

    Strictly, with one exception: a dual-path model with more layers than the checkpoint
    (``num_layers``) is *grown*. The checkpoint fills the first layers, and each new layer
    starts as the identity (its two output norms at 0, its fusion gates closed), so the grown
    model starts with exactly the pretrained model's output. A resumed run then loads its own
    checkpoint over it, so fine-tuning resumes as any run.

    Arguments
    ---------
    extractor : TargetExtractor
        The model to initialise, in place.
    folder : str
        A ``pretrained/`` folder holding ``extractor.ckpt``.

    Example
    -------
    >>> import tempfile
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> small = load_hyperpyyaml(
    ...     open("hparams/models/tse.yaml"),
    ...     {"N": 16, "num_layers": 1, "fusion_gate": True},
    ... )["extractor"]
    >>> folder = tempfile.mkdtemp()
    >>> torch.save(small.state_dict(), os.path.join(folder, "extractor.ckpt"))
    >>> grown = load_hyperpyyaml(
    ...     open("hparams/models/tse.yaml"),
    ...     {"N": 16, "num_layers": 2, "fusion_gate": True},
    ... )["extractor"]
    >>> load_pretrained_extractor(grown, folder)
    >>> _ = small.eval(), grown.eval()
    >>> mix, enroll = torch.randn(1, 4000), torch.randn(1, 4000)
    >>> torch.allclose(small(mix, enroll), grown(mix, enroll), atol=1e-5)
    True
    >>> load_pretrained_extractor(grown, "/no/such/folder")
    Traceback (most recent call last):
    ...
    SystemExit: init_from: no extractor.ckpt in /no/such/folder
    """
    path = os.path.join(folder, "extractor.ckpt")
    if not os.path.isfile(path):
        raise SystemExit(f"init_from: no extractor.ckpt in {folder}")
    state = torch.load(path, map_location="cpu")
    try:
        extractor.load_state_dict(state)
        logger.info("extractor started from %s", path)
        return
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        new = _new_layers(extractor, state)
        if new is None:
            raise SystemExit(
                f"init_from: {path} does not fit this model ({first})"
            ) from None
    extractor.load_state_dict(state, strict=False)
    with torch.no_grad():
        for block in new:
            for norm in (block.intra_norm, block.inter_norm):
                norm.weight.zero_()
                norm.bias.zero_()
    logger.info(
        "extractor started from %s, grown by %d dual-path layers (identity)",
        path,
        len(new),
    )


def _new_layers(extractor, state):
    """The dual-path blocks ``extractor`` has beyond those in ``state``, when growing it by
    appending them is all that differs (every other tensor of the same shape, no unexpected
    key, a closed gate at every new fusion point); None otherwise."""
    masknet = getattr(extractor, "masknet", None)
    blocks = getattr(masknet, "dual_mdl", None)
    if blocks is None:
        return None
    old = len(
        {k.split(".")[2] for k in state if k.startswith("masknet.dual_mdl.")}
    )
    if not 0 < old < len(blocks) or any(b.norm is None for b in blocks):
        return None
    own = extractor.state_dict()
    new_prefixes = tuple(
        f"masknet.dual_mdl.{i}." for i in range(old, len(blocks))
    )
    new_fusions = tuple(
        f"masknet.fusions.{i}_" for i in range(old, len(blocks))
    )
    for key, value in own.items():
        if key in state:
            if state[key].shape != value.shape:
                return None
        elif key.startswith(new_fusions):
            if key.endswith(".gate") and value.abs().sum() > 0:
                return None
        elif not key.startswith(new_prefixes):
            return None
    fusions = {k.split(".")[2] for k in own if k.startswith(new_fusions)}
    if any(f"masknet.fusions.{f}.gate" not in own for f in fusions):
        return None  # a fusion point without a gate is not the identity at the start
    if any(key not in own for key in state):
        return None
    return list(blocks)[old:]
