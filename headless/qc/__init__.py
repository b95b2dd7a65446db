"""QC queue: an uncertainty for every automatic result, so a human checks the worst first.

* :mod:`.uncertainty` - pure numpy scores: boxes (method score, agreement between methods,
  attention mass), SAM masks (predicted IoU, stability), scribble segmentations (entropy,
  margin). Each returns ``{"uncertainty": 0..1, "signals": {...}, "reasons": [...]}``.
* :mod:`.store` - the per-image record ``<project>/images/<name>/qc.json`` and the user's
  verification of SAM / segmentation results (boxes are verified in ``boxes.json``).
* :mod:`.queue` - the folder's images ordered worst first, filtered by status, as rows or CSV.

Front ends: the boxes dock's queue controls and ``dinoseg qc``. Import the submodules directly
(this package re-exports nothing, so importing it costs nothing).
"""
