"""Embedding explorer dock: a map of a folder's features, outliers and likely mislabels."""
