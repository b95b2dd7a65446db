"""The Train dock's "Progress" box: bar, status line, loss / accuracy curves, confusion matrix
(a batch run shows its images, images/s and ETA in the bar and status line, without curves; a
dino run its loss and, with a k-NN folder, the teacher's k-NN top-1, without a confusion matrix).

It only draws what :class:`~.controller.TrainController` holds (curves, state, wording), so
the panel's job is to call :meth:`RunProgress.redraw` after each poll.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QGroupBox,
    QLabel,
    QProgressBar,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from napari_dinoseg._widgets.train.controller import (
    TrainController,
    confusion_cells,
    confusion_title,
)
from napari_dinoseg._widgets.train.line_plot import LinePlot, Series

DIAGONAL = (46, 125, 50)  # green: right predictions
OFF_DIAGONAL = (198, 40, 40)  # red: confusions


class RunProgress(QGroupBox):
    """What a followed run looks like now; :meth:`clear` when another run is followed."""

    def __init__(self) -> None:
        super().__init__("Progress")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.status_label = QLabel("no run")
        self.status_label.setWordWrap(True)
        self.loss_plot = LinePlot("loss")
        self.acc_plot = LinePlot("accuracy", y_range=(0.0, 1.0))
        self.confusion = QTableWidget()
        self.confusion.setMinimumHeight(120)
        self.confusion_label = QLabel("confusion matrix (rows: true, columns: predicted)")
        lay = QVBoxLayout(self)
        for w in (self.bar, self.status_label, self.loss_plot, self.acc_plot,
                  self.confusion_label, self.confusion):
            lay.addWidget(w)

    def clear(self) -> None:
        self.loss_plot.clear()
        self.acc_plot.clear()
        self.confusion.clear()
        self.confusion.setRowCount(0)
        self.confusion.setColumnCount(0)
        self.bar.setRange(0, 1)
        self.bar.setValue(0)

    def redraw(self, run: TrainController) -> None:
        """Bar, status line and curves from the controller's curves and state."""
        c = run.curves
        total = c.total_steps or 0
        bar = run.progress()
        if bar is not None:
            self.bar.setRange(0, bar[0])
            self.bar.setValue(bar[1])
        self.status_label.setText(run.status_text())
        batch = run.batch is not None  # a batch run: images, images/s and ETA, no curves
        dino = run.job == "dino"  # self-supervised: a loss, k-NN top-1 at most, no classes
        self.loss_plot.setVisible(not batch)
        self.acc_plot.setVisible(not batch and (not dino or bool(run.knn)))
        for w in (self.confusion_label, self.confusion):
            w.setVisible(not batch and not dino)
        if batch:
            return
        if dino:
            self.loss_plot.set_series([Series("train loss", c.train_step, c.train_loss,
                                              "#ffb74d")], x_max=total or None)
            self.acc_plot.set_series([Series("k-NN top-1", [s for s, _ in run.knn],
                                             [a for _, a in run.knn], "#81c784", True)],
                                     x_max=total or None)
            return
        self.loss_plot.set_series([Series("train loss", c.train_step, c.train_loss, "#ffb74d"),
                                   Series("val loss", c.eval_step, c.eval_loss, "#ba68c8", True)],
                                  x_max=total or None)
        self.acc_plot.set_series([Series("train", c.train_step, c.train_acc, "#4fc3f7"),
                                  Series("val @1", c.eval_step, c.eval_acc1, "#81c784", True),
                                  Series("val @5", c.eval_step, c.eval_acc5, "#aed581", True)],
                                 x_max=total or None)

    def show_confusion(self, data: dict[str, Any] | None) -> None:
        """Fill the table from a ``confusion_matrix.json`` (row-normalised shading)."""
        if data is None:
            return
        classes = data["classes"]
        n = len(classes)
        self.confusion.setRowCount(n)
        self.confusion.setColumnCount(n)
        self.confusion.setHorizontalHeaderLabels(classes)
        self.confusion.setVerticalHeaderLabels(classes)
        for i, row in enumerate(confusion_cells(data["matrix"])):
            for j, (text, diagonal, alpha) in enumerate(row):
                item = QTableWidgetItem(text)
                color = QColor(*(DIAGONAL if diagonal else OFF_DIAGONAL))
                color.setAlpha(alpha)
                item.setBackground(color)
                self.confusion.setItem(i, j, item)
        self.confusion_label.setText(confusion_title(data))
