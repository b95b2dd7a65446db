"""napari-dinoseg's engine: everything that runs without a display.

Nothing in this package imports Qt, napari or magicgui; heavy libraries (torch, timm) are imported
inside the functions that need them so that ``import headless`` stays cheap.
"""

__version__ = "0.1.0"
