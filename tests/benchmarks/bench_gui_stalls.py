"""Longest GUI event-loop stall per dock action, measured with a QTimer heartbeat.

Run under Xvfb from the repository root (needs ../shared/data):

    xvfb-run -a -s "-screen 0 1280x800x24" python tests/benchmarks/bench_gui_stalls.py

A 5 ms single-shot-free QTimer ticks on the GUI thread; the longest gap between two ticks while
an action runs (from the click to its result on screen) is the longest time the viewer could not
repaint or answer the mouse. Goal: no action over 100 ms (opening an image into napari is
excluded). The docks run threaded here, as for a user (``DINOSEG_SYNC`` unset). An "add dock"
action lasts until the dock's warm-up thread has finished (its cost is counted there). The
``floor`` part, last, measures napari alone adding the same kinds of layer and dock (no dock
code): the floor under the actions that add one. Parts (``BENCH_PARTS``): crf, segment, sam,
features (real ViT-S/14 where ../shared has it; its views added in one callback / one per
turn, side by side), embeddings, train (a tiny run in its own process), boxes, floor.

Each stall is split with the GUI thread's scheduler counters (:class:`Heartbeat`): cpu (work on
the GUI thread), queued (waiting for a core: the machine's load) and blocked (waiting for the
GIL, or a lock). ``BENCH_PROFILE=1`` adds, for the two longest gaps of each action, the tree of
GUI-thread calls over 20 ms and the full garbage collections (:class:`Profiler`).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("DINOSEG_SHARED_DATA", ROOT.parent / "shared" / "data"))
WEIGHTS = ROOT.parent / "shared" / "weights" / "dinov2_vits14_imgfocus.safetensors"  # real ViT-S/14
SIDE = int(os.environ.get("BENCH_SIDE", "1024"))  # image side: 0.tif tiled to SIDE x SIDE
GOAL_MS = 100.0
PARTS = os.environ.get(
    "BENCH_PARTS", "crf,segment,sam,features,embeddings,train,boxes,floor").split(",")
os.environ.pop("DINOSEG_SYNC", None)
# a user's Python caches compiled modules (``__pycache__``); these machines set
# PYTHONDONTWRITEBYTECODE=1, and every first import of a dock's modules then compiled them from
# source on the GUI thread (the SAM dock's first opening: 36 ms of compile)
sys.dont_write_bytecode = False


class Heartbeat:
    """Longest gap between ticks of a fast QTimer on the GUI thread.

    Each gap is split with the GUI thread's own scheduler counters (``/proc/thread-self/
    schedstat``, Linux): ``cpu`` (the GUI thread ran: work on the GUI thread), ``queue`` (ready
    but waiting for a core: the machine's load, not the program) and the rest, ``blocked``
    (asleep: waiting for the GIL that a worker holds, or for a lock / the disk).
    """

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._tick)
        self._stat = _open_schedstat()
        self.last = time.perf_counter()
        self.last_stat = self._read()
        self.worst = 0.0
        self.worst_split = (0.0, 0.0, 0.0)
        self.gaps: list[tuple[float, float, float, float, float]] = []  # (end, gap, cpu, q, blk)

    def _read(self) -> tuple[float, float]:
        if self._stat is None:
            return 0.0, 0.0
        self._stat.seek(0)
        cpu, queue = self._stat.read().split()[:2]
        return int(cpu) / 1e9, int(queue) / 1e9

    def _tick(self) -> None:
        now, stat = time.perf_counter(), self._read()
        gap = now - self.last
        cpu, queue = stat[0] - self.last_stat[0], stat[1] - self.last_stat[1]
        split = (cpu, queue, max(0.0, gap - cpu - queue))
        if gap > self.worst:
            self.worst, self.worst_split = gap, split
        if gap > 0.05:
            self.gaps.append((now, gap, *split))
        self.last, self.last_stat = now, stat

    def reset(self) -> None:
        self.last, self.last_stat, self.worst = time.perf_counter(), self._read(), 0.0
        self.worst_split, self.gaps = (0.0, 0.0, 0.0), []
        self.timer.start()


def _open_schedstat():
    try:
        return open("/proc/thread-self/schedstat")  # noqa: SIM115 - read on every tick
    except OSError:
        return None


class Profiler:
    """What ran during long gaps (``BENCH_PROFILE=1``): every Python call and C call over 20 ms,
    on the GUI thread and (marked with the thread's name) in the threads started after the
    profiler (a worker holding the GIL shows as *blocked* time of the GUI thread)."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float, int, str]] = []  # (start, duration, depth, where)
        self._stacks: dict[int, list[float]] = {}

    def _where(self, frame, name: str) -> str:
        code = frame.f_code
        short = code.co_filename.split("site-packages/")[-1].split("/work/main/")[-1]
        return f"{name} ({short}:{code.co_firstlineno})"

    def hook(self, frame, event, arg) -> None:
        stack = self._stacks.setdefault(threading.get_ident(), [])
        if event in ("call", "c_call"):
            stack.append(time.perf_counter())
        elif event in ("return", "c_return", "c_exception") and stack:
            t0 = stack.pop()
            d = time.perf_counter() - t0
            if d > 0.02:
                if event == "return":
                    name = frame.f_code.co_qualname
                else:
                    name = "C " + (getattr(arg, "__qualname__", None)
                                   or getattr(arg, "__name__", ""))
                thread = threading.current_thread()
                if thread is not threading.main_thread():
                    name = f"[{thread.name}] {name}"
                self.calls.append((t0, d, len(stack), self._where(frame, name)))

    def _gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        elif info.get("generation") == 2:
            t0 = getattr(self, "_gc_t0", time.perf_counter())
            d = time.perf_counter() - t0
            if d > 0.02:
                where = "GUI thread" if threading.current_thread() is threading.main_thread() \
                    else threading.current_thread().name
                self.calls.append((t0, d, 0, f"GC full collection (in {where})"))

    def start(self) -> None:
        import gc

        gc.callbacks.append(self._gc)
        sys.setprofile(self.hook)
        threading.setprofile(self.hook)

    def report(self, gaps) -> None:
        """The call tree (calls over 20 ms) of the two longest gaps."""
        for end, gap, cpu, queue, blocked in sorted(gaps, key=lambda g: -g[1])[:2]:
            print(f"    gap {gap * 1000:6.0f} ms: GUI thread cpu {cpu * 1000:5.0f}, "
                  f"queued {queue * 1000:5.0f}, blocked {blocked * 1000:5.0f}")
            inside = [c for c in self.calls if c[0] >= end - gap - 0.002 and c[0] + c[1] <= end
                      + 0.002 or (c[0] <= end - gap and c[0] + c[1] >= end)]
            inside.sort(key=lambda c: (c[0], c[2]))
            top = min((c[2] for c in inside), default=0)
            inside = [c for c in inside if not any(k in c[3] for k in _PLUMBING)]
            for _t0, d, depth, where in inside[:int(os.environ.get("BENCH_PROFILE_LINES", 40))]:
                print(f"      {'  ' * min(depth - top, 30)}{d * 1000:5.0f} ms {where}")
        self.calls = []


_PLUMBING = ("<frozen", "importlib/__init__", "C exec ", "C __import__", "C hasattr",
             "lazy_loader", "C _QtMainWindow.event", "C CanvasBackendDesktop.event")
PROFILER = Profiler() if os.environ.get("BENCH_PROFILE") == "1" else None


def pump(app, until, timeout: float = 600.0) -> bool:
    t0 = time.perf_counter()
    while not until():
        app.processEvents()
        time.sleep(0.002)
        if time.perf_counter() - t0 > timeout:
            return False
    for _ in range(20):  # the result's repaint
        app.processEvents()
        time.sleep(0.002)
    return True


ROWS: list[tuple] = []


def measure(app, hb, name: str, action, until, timeout: float = 300.0) -> None:
    hb.reset()
    t0 = time.perf_counter()
    action()
    ok = pump(app, until, timeout)
    hb._tick()
    cpu, queue, blocked = (x * 1000 for x in hb.worst_split)
    ROWS.append((name, hb.worst * 1000, time.perf_counter() - t0, ok, cpu, queue, blocked))
    print(f"{name:<44s} longest stall {hb.worst * 1000:8.0f} ms (GUI cpu {cpu:5.0f}, queued "
          f"{queue:5.0f}, blocked {blocked:5.0f})   total {ROWS[-1][2]:6.1f} s"
          f"{'' if ok else '  (TIMED OUT)'}", flush=True)
    if PROFILER is not None:
        PROFILER.report(hb.gaps)


def open_dock(app, hb, viewer, cls, title: str, row: str, until=None):
    """Measure opening a dock of ``cls`` (until its warm-up has finished, or ``until(dock)``)
    and return the dock."""
    from napari_dinoseg._widgets.common.warmup import warmed_up

    made: list = []

    def add():
        made.append(cls(viewer))
        viewer.window.add_dock_widget(made[-1], name=title)

    measure(app, hb, row, add, (lambda: until(made[-1])) if until else warmed_up)
    return made[-1]


def tiled(img: np.ndarray, side: int) -> np.ndarray:
    reps = [int(np.ceil(side / s)) for s in img.shape[:2]]
    return np.tile(img, reps + [1] * (img.ndim - 2))[:side, :side]


def napari_alone(app, hb, viewer, shape: tuple[int, int]) -> None:
    """The floor under the dock actions: napari's own cost of the layers and docks they add,
    in the same session and viewer (warm: after the docks ran), with no dock code at all."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QLabel

    made: list = []

    def labels_then_paint():  # what "New" does: a layer, then the brush a turn later
        made.append(viewer.add_labels(np.zeros(shape, np.uint8), name="floor scribbles"))
        QTimer.singleShot(1, lambda: setattr(made[-1], "mode", "paint"))

    def result_labels():  # a result layer (the selection handed back to the scribbles)
        active = viewer.layers.selection.active
        made.append(viewer.add_labels(np.ones(shape, np.uint8), name="floor result"))
        viewer.layers.selection.active = active

    def shapes():  # three boxes with captions, as the boxes dock shows them
        boxes = [np.array([[10 + 40 * i, 10], [40 + 40 * i, 60]]) for i in range(3)]
        made.append(viewer.add_shapes(
            boxes, shape_type="rectangle", edge_color="yellow", face_color="transparent",
            features={"caption": ["a", "b", "c"]}, text={"string": "{caption}"},
            name="floor boxes"))

    measure(app, hb, "napari alone: Labels layer, then paint mode", labels_then_paint,
            lambda: made and made[-1].mode == "paint")
    measure(app, hb, "napari alone: Labels result layer", result_labels, lambda: True)
    measure(app, hb, "napari alone: Shapes layer (3 boxes)", shapes, lambda: True)
    measure(app, hb, "napari alone: Points layer (24 points)", lambda: made.append(
        viewer.add_points(np.random.default_rng(0).random((24, 2)) * 100, name="floor points",
                          face_color="cyan")), lambda: True)
    measure(app, hb, "napari alone: RGB image layer (excluded)",
            lambda: made.append(viewer.add_image(np.zeros((*shape, 3), np.uint8))), lambda: True)
    viewer.window.remove_dock_widget("all")  # the dock below narrows the canvas, as the docks'
    pump(app, lambda: True)
    dock = QLabel("an empty dock")
    measure(app, hb, "napari alone: a dock with one label",
            lambda: viewer.window.add_dock_widget(dock, name="floor dock"), lambda: True)
    viewer.window.remove_dock_widget(dock)
    for layer in made:
        viewer.layers.remove(layer)


def main() -> int:
    import napari
    import tifffile
    from qtpy.QtWidgets import QApplication

    from headless.images import read_image, read_labels

    work = Path(tempfile.mkdtemp(prefix="dinoseg-bench-"))
    image = tiled(read_image(DATA / "scribbles" / "0.tif"), SIDE)
    scribbles = tiled(read_labels(DATA / "scribbles" / "0_labels.tif"), SIDE)
    path = work / "sem.tif"
    tifffile.imwrite(path, image)
    folder = work / "folder"
    folder.mkdir()
    for i in range(4):
        tifffile.imwrite(folder / f"s{i}.tif", np.roll(image, 37 * i, axis=1))

    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1280, 800)
    app = QApplication.instance()
    hb = Heartbeat()
    if PROFILER is not None:
        PROFILER.start()
    viewer.open(str(path))  # loading an image into napari: excluded from the goal
    pump(app, lambda: True)
    print(f"image {SIDE} x {SIDE}; machine: {os.cpu_count()} CPUs\n", flush=True)

    # -- the dense CRF side by side: a worker thread (before) vs the helper process (now) -------
    if "crf" in PARTS:
        import threading

        from headless.segment.crf import CRFParams, crf_refine
        from napari_dinoseg._widgets.common.processes import HelperProcess

        helper = HelperProcess()

        p = np.clip(image.astype(np.float32) / 255, 0.05, 0.95)
        proba = np.stack([1 - p, p], -1)
        box: list = []

        def in_thread():
            t = threading.Thread(target=lambda: box.append(crf_refine(image, proba, CRFParams())))
            t.start()

        def in_process():
            t = threading.Thread(target=lambda: box.append(
                helper.run(crf_refine, image, proba, CRFParams(), inline=False)))
            t.start()

        helper.run(np.add, 1, 1, inline=False)  # the helper starts once per session
        measure(app, hb, "crf: in a worker thread (before)", in_thread, lambda: len(box) == 1)
        measure(app, hb, "crf: in the helper process (now)", in_process, lambda: len(box) == 2)
        print(f"  same result: {np.allclose(box[0], box[1], atol=1e-6)}", flush=True)

    # -- scribble dock -----------------------------------------------------------------------
    if "segment" in PARTS:
        from napari_dinoseg._widgets.segment.panel import SegmentWidget

        # the dock warms napari's first-layer imports up in a thread: counted in this action
        w = open_dock(app, hb, viewer, SegmentWidget, "Scribbles",
                      "segment: add dock (nothing saved)")
        shown: list = []
        orig = w.show_segmentations
        w.show_segmentations = lambda *a, **k: (shown.append(1), orig(*a, **k))
        measure(app, hb, "segment: New scribble layer", w.new_scribble_layer,
                lambda: w.scribble_layer() is not None)
        layer = w.scribble_layer()

        # the scribbles arrive unmeasured (napari's own painting cost is not the dock's) ...
        w.live_check.setChecked(False)
        top = int(scribbles.max())
        held = {}  # pixels of the last class kept back for two later strokes
        for v in [int(v) for v in np.unique(scribbles) if v]:
            rows, cols = np.nonzero(scribbles == v)
            if v == top:
                held = {0: (rows[-80:-40], cols[-80:-40]), 1: (rows[-40:], cols[-40:])}
                rows, cols = rows[:-80], cols[:-80]
            layer.data_setitem((rows, cols), v)
        pump(app, lambda: not w._timer.isActive())
        w.live_check.setChecked(True)
        strokes = iter(held.values())

        def stroke():  # ... then one short stroke (new pixels): debounce, features, fit, show
            layer.data_setitem(next(strokes), top)

        measure(app, hb, "segment: stroke -> live train (classical)", stroke,
                lambda: len(shown) >= 1 and w._worker is None and not w._timer.isActive())
        n = len(shown)
        measure(app, hb, "segment: stroke -> retrain (features cached)", stroke,
                lambda: len(shown) > n and w._worker is None and not w._timer.isActive())
        n = len(shown)
        measure(app, hb, "segment: tick dense CRF -> refreshed",
                lambda: w.crf_group.setChecked(True),
                lambda: len(shown) > n and w._worker is None and not w._timer.isActive())
        w.crf_group.setChecked(False)  # (the folder run with CRF: see the README)
        pump(app, lambda: w._worker is None and not w._timer.isActive())
        measure(app, hb, "segment: apply to folder (4 images)",
                lambda: w.apply_to_folder(folder, work / "out"),
                lambda: w._worker is None and len(list((work / "out").glob("*.tif"))) >= 4)
        w.flush_saves()
        for ly in list(viewer.layers)[1:]:
            viewer.layers.remove(ly)
        viewer.window.remove_dock_widget(w)

        w2 = open_dock(app, hb, viewer, SegmentWidget, "Scribbles again",
                       "segment: add dock (restoring saved work)",
                       lambda d: f"{path.stem} scribbles" in viewer.layers
                       and d.probe is not None and d._worker is None)
        viewer.window.remove_dock_widget(w2)

    # -- SAM dock (tiny architecture, random checkpoint: the dock's path, not SAM's quality) ----
    if "sam" in PARTS:
        import headless.sam as S
        from napari_dinoseg._widgets.sam.panel import SamWidget

        ckpt = S.save_random_checkpoint(work / "tiny.pth")
        sam = open_dock(app, hb, viewer, SamWidget, "SAM", "sam: add dock")
        sam.model_combo.setCurrentText("test_sam_tiny")
        sam.weights_edit.setText(str(ckpt))
        sam.device_combo.setCurrentText("cpu")
        sam.points_spin.setValue(8)
        sam.iou_spin.setValue(0.0)
        sam.stab_spin.setValue(0.0)
        before = len(viewer.layers)
        measure(app, hb, "sam: automatic masks (tiny model)", sam.automatic,
                lambda: sam._worker is None and len(viewer.layers) > before)
        viewer.window.remove_dock_widget(sam)

    # -- features dock: attention maps, heads, mask and PCA of the SEM image ------------------
    if "features" in PARTS:
        from headless.features.backbones import load_backbone
        from headless.features.views import feature_views
        from headless.progress import run as run_to_end
        from napari_dinoseg._widgets.features.panel import FeaturesWidget

        weights = WEIGHTS
        name, wts = ("dinov2_vits14", str(weights)) if weights.is_file() else \
            ("test_dinov2_tiny14_reg", "random")
        fw = open_dock(app, hb, viewer, FeaturesWidget, "Features", "features: add dock")
        fw.backbone_combo.setCurrentText(name)
        fw.weights_edit.setText(wts)
        fw.size_spin.setValue(224)
        n0 = len(viewer.layers)
        measure(app, hb, f"features: compute views ({name})", fw.run,
                lambda: len(viewer.layers) >= n0 + 4 and "grid" in fw.status.text())
        measure(app, hb, "features: compute again (layers in place)", fw.run,
                lambda: not fw._jobs.busy and "grid" in fw.status.text())
        # side by side: the same views' layers added in one callback (before) / one per turn
        # (now), each over an image layer of its own (no layer removed in between)
        views = run_to_end(feature_views(load_backbone(name, wts), image, size=224))
        for label, sync in (("features: add the views, one callback (before)", "1"),
                            ("features: add the views, one per turn (now)", "0")):
            target = viewer.add_image(image, name=f"{path.stem} {sync}")
            n = len(viewer.layers)
            pump(app, lambda: True)

            def add(sync=sync, target=target):
                if sync == "1":  # before: napari's own add of every view, in one callback
                    for spec in fw.layer_specs(target, views, name):
                        getattr(viewer, f"add_{spec.kind}")(spec.data, name=spec.name,
                                                            **spec.kwargs)
                else:
                    fw.add_layers(target, views, name)

            measure(app, hb, label, add,
                    lambda n=n: len(viewer.layers) >= n + 4 and "grid" in fw.status.text())
        for ly in list(viewer.layers)[1:]:  # hidden, not removed: later parts draw none of them
            ly.visible = False
        viewer.window.remove_dock_widget(fw)

    # -- embeddings dock (tiny ViT, random weights: the dock's path, not the map's quality) -----
    if "embeddings" in PARTS:
        from PIL import Image

        from napari_dinoseg._widgets.embeddings.panel import EmbeddingsWidget

        pets = work / "pets"
        rng = np.random.default_rng(0)
        for c, base in (("dark", 20), ("light", 230)):
            (pets / c).mkdir(parents=True)
            for i in range(12):
                img = np.clip(base + rng.normal(0, 5, (64, 64, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(pets / c / f"{i}.png")
        ew = open_dock(app, hb, viewer, EmbeddingsWidget, "Embeddings", "embeddings: add dock")
        ew.folder_edit.setText(str(pets))
        ew.model_fields.set(name="test_dino_tiny16", weights="random", device="cpu")
        ew.size_spin.setValue(32)
        ew.k_spin.setValue(4)
        ew.projection_combo.setCurrentText("pca")
        measure(app, hb, "embeddings: compute map (24 images)", ew.compute_map,
                lambda: not ew.slot.busy and ew.layer is not None)
        measure(app, hb, "embeddings: open a point's image", lambda: ew.open_point(3),
                lambda: ew.image_layer is not None)
        for ly in list(viewer.layers)[1:]:
            ly.visible = False
        viewer.window.remove_dock_widget(ew)

    # -- Train dock: a tiny classifier run in its own process, followed live -----------------
    if "train" in PARTS:
        from headless.train.synthetic import make_shapes_dataset
        from napari_dinoseg._widgets.train.panel import TrainWidget

        make_shapes_dataset(work / "ds", n_per_class=6, size=24)
        os.environ["OMP_NUM_THREADS"] = "1"  # the worker process: one thread on 2 cores
        tw = open_dock(app, hb, viewer, TrainWidget, "Train", "train: add dock", lambda d: True)
        tw.data_edit.setText(str(work / "ds"))
        tw.boxes_edit.setText(str(work / "ds" / "boxes.json"))
        tw.model_combo.setCurrentText("test_resnet_tiny")
        for spin, value in ((tw.size_spin, 24), (tw.batch_spin, 4), (tw.workers_spin, 0),
                            (tw.epochs_spin, 3), (tw.log_spin, 1)):
            spin.setValue(value)
        tw.device_combo.setCurrentText("cpu")
        tw.root_edit.setText(str(work / "runs"))
        measure(app, hb, "train: launch and follow a run (3 epochs)", tw.launch,
                lambda: tw.state == "completed", timeout=300)
        viewer.window.remove_dock_widget(tw)

    # -- boxes dock (real DINOv2 ViT-S/14 where ../shared has it) ------------------------------
    if "boxes" in PARTS:
        weights = WEIGHTS
        if weights.is_file():
            from napari_dinoseg._widgets.boxes.panel import BoxesWidget

            photos = work / "photos"
            photos.mkdir()
            for p in sorted((DATA / "raccoon_voc").rglob("*.jpg"))[:3]:
                shutil.copy(p, photos / p.name)
            bx = open_dock(app, hb, viewer, BoxesWidget, "Boxes", "boxes: add dock")
            measure(app, hb, "boxes: open folder (3 photos)", lambda: bx.set_folder(photos),
                    lambda: bx.current_image is not None)
            bx.backbone_combo.setCurrentText("dinov2_vits14")
            bx.weights_combo.setCurrentText(str(weights))
            measure(app, hb, "boxes: compute this image (LOST, ViT-S/14)", bx.compute_current,
                    lambda: bx._jobs.worker is None and len(bx.current_boxes()) > 0, timeout=300)
            measure(app, hb, "boxes: next image", bx.next_image, lambda: True)
    if "floor" in PARTS:
        napari_alone(app, hb, viewer, image.shape[:2])
    viewer.close()
    from napari_dinoseg._widgets.common.collector import _installed

    if _installed:
        print(f"\nfull collections run in pauses (IdleCollections): {_installed[0].collections}")

    print("\n| action | longest stall (ms) | of which GUI thread cpu / queued / blocked (ms) "
          "| total (s) |\n|---|---:|---:|---:|")
    for name, stall, total, ok, cpu, queue, blocked in ROWS:
        flag = "" if stall <= GOAL_MS else " **over 100 ms**"
        print(f"| {name} | {stall:.0f}{flag} | {cpu:.0f} / {queue:.0f} / {blocked:.0f} "
              f"| {total:.1f}{'' if ok else ' (timed out)'} |")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
