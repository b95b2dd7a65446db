"""The runner choice of a job: local, torchrun, slurm; those that cannot run here are greyed.

Whether a runner can run a spec here is :func:`headless.jobs.runners.available_runners`'s word
(checked in a worker thread by the caller); a greyed runner's tooltip is the reason.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox

from napari_dinoseg._widgets.common.batch_runs import RUNNER_NAMES

RUNNER_TIPS = {"local": "one background process on this machine",
               "torchrun": "one process per GPU of this machine",
               "slurm": "a SLURM job array, one task per shard"}


class RunnerCombo(QComboBox):
    """The runners, each with what it does (or why it cannot run here) as its tooltip."""

    def __init__(self) -> None:
        super().__init__()
        self.addItems(list(RUNNER_NAMES))
        self.runners: dict[str, str | None] = {}  # the last check: name -> None or why not
        for i, name in enumerate(RUNNER_NAMES):
            self.setItemData(i, RUNNER_TIPS[name], Qt.ItemDataRole.ToolTipRole)

    def set_runners(self, runners: dict[str, str | None]) -> None:
        """Enable each runner, or grey it with the reason it cannot run as its tooltip; move
        off a chosen runner that cannot run."""
        self.runners = dict(runners)
        for i, name in enumerate(RUNNER_NAMES):
            why = runners.get(name)
            self.model().item(i).setEnabled(why is None)
            self.setItemData(i, why or RUNNER_TIPS[name], Qt.ItemDataRole.ToolTipRole)
        if runners.get(self.currentText()):
            free = [n for n in RUNNER_NAMES if not runners.get(n)]
            if free:
                self.setCurrentText(free[0])
