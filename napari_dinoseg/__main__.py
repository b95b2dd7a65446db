"""``python -m napari_dinoseg``: napari with a sample image and a DINO seg dock open.

``--screenshot FILE`` computes the features with the chosen backbone, saves a screenshot of the
whole window and quits (used for the README's picture and for looking at the GUI under Xvfb).
"""

from __future__ import annotations

import os

DOCKS = {
    "features": "Features and attention",
    "segment": "Scribble segmentation",
    "boxes": "Object boxes",
    "sam": "SAM masks",
    "train": "Train",
    "embeddings": "Embeddings",
}


def main(argv: list[str] | None = None) -> None:
    from headless.cli import OneLineErrors

    parser = OneLineErrors(prog="python -m napari_dinoseg")
    parser.add_argument("--sample", default="chelsea", choices=("astronaut", "chelsea", "coffee"))
    parser.add_argument("--image", help="open this image file instead of a sample")
    parser.add_argument("--dock", default="features", choices=sorted(DOCKS))
    parser.add_argument("--backbone", help="preselect a backbone in the features dock")
    parser.add_argument("--weights", help="preselect weights ('official', 'random' or a file)")
    parser.add_argument("--mode", help="preselect the dense mode (patch, bilinear, hr, classical, "
                        "hybrid) in the features dock")
    parser.add_argument("--screenshot", help="compute, save a window screenshot here, and quit")
    args = parser.parse_args(argv)

    import napari

    viewer = napari.Viewer(title="napari-dinoseg")
    if args.image:
        viewer.open(args.image)
    else:
        viewer.open_sample("napari-dinoseg", args.sample)
    _, widget = viewer.window.add_plugin_dock_widget("napari-dinoseg", DOCKS[args.dock])
    if args.dock == "features":
        if args.backbone:
            widget.backbone_combo.setCurrentText(args.backbone)
        if args.weights:
            widget.weights_edit.setText(args.weights)
        if args.mode:
            widget.mode_combo.setCurrentText(args.mode)
    if args.screenshot:
        os.environ["DINOSEG_SYNC"] = "1"
        viewer.window.resize(1400, 850)
        if args.dock == "features":
            widget.run()
            for layer in viewer.layers:
                if "heads" in layer.name or "mask" in layer.name:
                    layer.visible = False
            from qtpy.QtWidgets import QApplication

            QApplication.processEvents()
        viewer.screenshot(args.screenshot, canvas_only=False)
        viewer.close()
        return
    napari.run()


if __name__ == "__main__":
    main()
