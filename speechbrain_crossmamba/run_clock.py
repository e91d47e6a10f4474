"""The run's training clock: the minutes a run has trained, across kills and resumes, and the
``max_train_minutes`` budget.

:class:`RunClock` is a mixin of :class:`~speechbrain_crossmamba.tse_brain.TSEBrain` (it comes
before ``sb.Brain`` in the bases). Every checkpoint of a
:class:`~speechbrain_crossmamba.checkpoints.Checkpointer` keeps the minutes (``train_minutes``
in its meta), so a resumed run counts on from them; :func:`_until` stops the epochs once the
budget is spent.

Authors
 * speechbrain-crossmamba contributors
"""

import time

from speechbrain.core import INTRA_EPOCH_CKPT_FLAG
from speechbrain_crossmamba.checkpoints import Checkpointer


class RunClock:
    """``sb.Brain`` mixin: the minutes a run has trained, and the ``max_train_minutes`` budget.

    Put it before ``sb.Brain`` in the bases (``class TSEBrain(RunClock, ..., sb.Brain)``): its
    :meth:`fit` and :meth:`on_fit_start` run around SpeechBrain's.
    """

    def fit(self, epoch_counter, train_set, valid_set=None, **kwargs):
        """``sb.Brain.fit``, on the run's clock.

        With ``max_train_minutes`` in the hparams, no epoch starts once the run has trained that
        many minutes (equal wall-clock budgets, as in ``benchmarks/paper_table.py``). The minutes
        are the run's, not the process's: every checkpoint keeps them (``train_minutes`` in its
        meta), so a killed and resumed run logs and spends one budget, and the epoch a kill
        interrupted is finished. A run that has not trained yet trains its first epoch, whatever
        the budget (the setup before it is not training).

        Arguments
        ---------
        epoch_counter, train_set, valid_set, **kwargs
            Those of ``sb.Brain.fit``.
        """
        self._fit_start, self._minutes_before, self._first_epoch_due = (
            time.monotonic(),
            0.0,
            True,
        )
        if isinstance(self.checkpointer, Checkpointer):
            self.checkpointer.clock, self.checkpointer.loaded = (
                self.train_minutes,
                None,
            )
        minutes = getattr(self.hparams, "max_train_minutes", None)
        if minutes is not None:
            epoch_counter = _until(
                epoch_counter,
                60.0 * float(minutes),
                lambda: 60.0 * self.train_minutes(),
                lambda: self._first_epoch_due,
            )
        return super().fit(epoch_counter, train_set, valid_set, **kwargs)

    def on_fit_start(self):
        """SpeechBrain's (which recovers the newest checkpoint), then the run's minutes so far,
        from the meta of the checkpoint it loaded."""
        super().on_fit_start()
        loaded = getattr(self.checkpointer, "loaded", None)
        if loaded is not None:
            self._minutes_before = float(loaded.meta.get("train_minutes", 0.0))
            self._first_epoch_due = (
                INTRA_EPOCH_CKPT_FLAG in loaded.meta
            )  # a killed epoch is finished

    def train_minutes(self):
        """Minutes of training of this run: those of its checkpoint plus this process's fit.

        Returns
        -------
        float
            The minutes.
        """
        return (
            self._minutes_before + (time.monotonic() - self._fit_start) / 60.0
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
    >>> (
    ...     list(_until(iter([4, 5]), 60, elapsed=lambda: 90)),
    ...     list(_until(iter([4, 5]), 60, lambda: 90, lambda: True)),
    ... )
    ([], [4])
    """
    if elapsed is None:
        start = time.monotonic()
        elapsed = lambda: time.monotonic() - start  # noqa: E731
    for i, epoch in enumerate(epochs):
        if elapsed() >= seconds and not (i == 0 and finish_current()):
            return
        yield epoch
