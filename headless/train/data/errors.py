"""The one error of the training data, raised before a worker starts wherever the data is wrong."""

from __future__ import annotations


class DatasetError(ValueError):
    """Training data that cannot be used; the message names the folder or file and the fix."""
