"""The fine-grained votes dock: a trained fgvc run's top-5 classes for the current image and a
stack of its per-layer vote maps laid over the image (seed 002's HeadMapVisualize)."""
