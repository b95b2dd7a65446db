"""A small line plot drawn with QPainter: live training curves without a plotting library.

napari ships no plotting library (matplotlib is not among its dependencies); two or three
curves of a few thousand points need only axes, lines and a legend, which QPainter draws in a
few milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget


@dataclass
class Series:
    name: str
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    color: str = "#4fc3f7"
    markers: bool = False


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    ticks, t = [], start
    while t <= hi + 1e-9 * step:
        ticks.append(round(t, 10))
        t += step
    return ticks


class LinePlot(QWidget):
    """Curves against the step: ``set_series`` then the widget repaints itself."""

    def __init__(self, title: str = "", y_range: tuple[float, float] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.y_range = y_range
        self.x_max: float | None = None
        self.series: list[Series] = []
        self.setMinimumHeight(130)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)

    def set_series(self, series: list[Series], x_max: float | None = None) -> None:
        self.series = series
        self.x_max = x_max
        self.update()

    def clear(self) -> None:
        self.set_series([])

    def _bounds(self) -> tuple[float, float, float, float]:
        xs = [x for s in self.series for x in s.xs]
        ys = [y for s in self.series for y in s.ys if math.isfinite(y)]
        x0, x1 = 0.0, float(max([*xs, self.x_max or 0.0, 1.0]))
        if self.y_range is not None:
            y0, y1 = self.y_range
        elif ys:
            y0, y1 = min(0.0, min(ys)), max(ys)
            y1 = y1 * 1.05 if y1 > 0 else 1.0
        else:
            y0, y1 = 0.0, 1.0
        if y1 <= y0:
            y1 = y0 + 1.0
        return x0, x1, y0, y1

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing, True)
        fg = self.palette().windowText().color()
        grid = QColor(fg)
        grid.setAlpha(50)
        left, right, top, bottom = 44.0, 8.0, 18.0, 20.0
        w, h = self.width(), self.height()
        area = QRectF(left, top, max(1.0, w - left - right), max(1.0, h - top - bottom))
        x0, x1, y0, y1 = self._bounds()

        def to_px(x: float, y: float) -> QPointF:
            return QPointF(area.left() + (x - x0) / (x1 - x0) * area.width(),
                           area.bottom() - (y - y0) / (y1 - y0) * area.height())

        p.setPen(QPen(fg))
        p.drawText(QRectF(left, 0, area.width(), top), Qt.AlignLeft | Qt.AlignVCenter, self.title)
        for t in _nice_ticks(y0, y1):
            pt = to_px(x0, t)
            p.setPen(QPen(grid))
            p.drawLine(QPointF(area.left(), pt.y()), QPointF(area.right(), pt.y()))
            p.setPen(QPen(fg))
            p.drawText(QRectF(0, pt.y() - 8, left - 4, 16), Qt.AlignRight | Qt.AlignVCenter,
                       f"{t:g}")
        for t in _nice_ticks(x0, x1):
            pt = to_px(t, y0)
            p.drawText(QRectF(pt.x() - 30, area.bottom() + 2, 60, bottom - 2), Qt.AlignCenter,
                       f"{t:g}")
        p.setPen(QPen(fg))
        p.drawRect(area)
        legend_x = area.right()
        for s in reversed(self.series):
            color = QColor(s.color)
            pts = [to_px(x, y) for x, y in zip(s.xs, s.ys) if math.isfinite(y)]
            pen = QPen(color)
            pen.setWidthF(1.6)
            p.setPen(pen)
            if len(pts) > 1:
                path = QPainterPath(pts[0])
                for q in pts[1:]:
                    path.lineTo(q)
                p.drawPath(path)
            if s.markers or len(pts) == 1:
                p.setBrush(color)
                for q in pts:
                    p.drawEllipse(q, 2.5, 2.5)
                p.setBrush(Qt.NoBrush)
            text_w = p.fontMetrics().horizontalAdvance(s.name) + 14
            legend_x -= text_w
            p.drawLine(QPointF(legend_x, top / 2), QPointF(legend_x + 8, top / 2))
            p.setPen(QPen(fg))
            p.drawText(QRectF(legend_x + 10, 0, text_w, top), Qt.AlignLeft | Qt.AlignVCenter,
                       s.name)
        p.end()
