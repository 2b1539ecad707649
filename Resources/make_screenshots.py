"""Regenerate the extension's screenshots in Resources/Screenshots/: real MRML scenes drawn headless by Slicer's own
slice-view pipeline from the `slicer-core` wheel (no Slicer application, no Qt).

    .venv/bin/python Resources/make_screenshots.py                      # sample-data screenshot only
    .venv/bin/python Resources/make_screenshots.py --make-run runs/shots  # + a demo-preset run first (~10-15 min CPU)
    .venv/bin/python Resources/make_screenshots.py --run RUN [--references REFS]  # + stage 1 vs aligned from RUN

How a view is drawn: each slice view is a vtkMRMLSliceLogic (which reslices and window/levels the background volume,
as it does for qMRMLSliceWidget) plus the slice-view displayable managers (vtkMRMLSegmentationsDisplayableManager2D
draws the segmentations), rendered into an offscreen VTK window. VTK picks EGL (Mesa llvmpipe without a GPU:
`apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri`); a subprocess probes it first, because a missing GL
segfaults instead of raising. Only the caption bar above each view (view colour and node names) is drawn with PIL.

Screenshots:
- AlignFlow-sample-data.png: the Sample Data scene (AlignFlowSlicer/Resources/SampleData/AlignFlowPhantoms.mrml,
  imported as the Sample Data button does): two labelled source pairs, segmentation overlaid, beside an unlabelled
  target reference.
- AlignFlow-stage1-vs-aligned.png (needs a run with both generators): pairs generated before (stage 1) and after
  alignment from the same masks and noise (`alignflow synthesize --mask-source source --seed 0`), loaded by the
  bridge's load_pair_folder as the module's "Show in scene" does (mask as an outline), beside target references.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")  # read when VTK creates its first window

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "Resources" / "Screenshots"
SAMPLE_SCENE = REPO / "AlignFlowSlicer" / "Resources" / "SampleData" / "AlignFlowPhantoms.mrml"
for _path in (REPO, REPO / "AlignFlowSlicer"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

VIEW_COLORS = {"Red": (243, 74, 51), "Yellow": (237, 213, 76), "Green": (110, 176, 75), "Slice4": (131, 131, 131)}
OUTLINE_COLOR = (1.0, 0.85, 0.1)
COLUMN_COLORS = ("Red", "Yellow", "Green")
SLICE_MANAGERS = ("vtkMRMLSegmentationsDisplayableManager2D",)
MAX_PNG_BYTES = 300_000

_PROBE = """
import vtk
window = vtk.vtkRenderWindow(); window.SetOffScreenRendering(1); window.SetSize(8, 8)
renderer = vtk.vtkRenderer(); renderer.SetBackground(1, 0, 0); window.AddRenderer(renderer); window.Render()
grab = vtk.vtkWindowToImageFilter(); grab.SetInput(window); grab.Update()
assert grab.GetOutput().GetPointData().GetScalars().GetTuple(0)[0] == 255
print(window.GetClassName())
"""


def probe_offscreen_gl() -> str:
    """The offscreen render-window class VTK gets here, tried in a child process (no GL crashes, not raises)."""
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise SystemExit("offscreen OpenGL does not work here (exit code {}); install Mesa's EGL: apt-get install "
                         "libegl1 libegl-mesa0 libgl1-mesa-dri\n{}".format(result.returncode, result.stderr[-2000:]))
    return result.stdout.strip().splitlines()[-1]


class SliceView:
    """One Slicer slice view without Qt, drawn offscreen: the slice logic's resliced, window/levelled image in the
    background (what qMRMLSliceWidget shows), the displayable managers' segmentation overlay on top."""

    def __init__(self, scene, app_logic, name: str, size_px: int):
        import slicer
        import vtk

        self.name, self.size_px = name, size_px
        self.renderer = vtk.vtkRenderer()
        self.window = vtk.vtkRenderWindow()
        self.window.SetOffScreenRendering(1)
        self.window.SetSize(size_px, size_px)
        self.window.AddRenderer(self.renderer)
        # The volume layer first: 2-D actors draw in the order they were added, and a segmentation's
        # half-transparent fill only blends with the image if the image is already there.
        self.mapper = vtk.vtkImageMapper()  # the slice logic's output is RGBA 0-255, already window/levelled
        self.mapper.SetColorWindow(255)
        self.mapper.SetColorLevel(127.5)
        actor = vtk.vtkActor2D()
        actor.SetMapper(self.mapper)
        actor.GetProperty().SetDisplayLocationToBackground()
        self.renderer.AddViewProp(actor)
        self.interactor = vtk.vtkRenderWindowInteractor()  # the displayable managers observe one
        self.interactor.SetRenderWindow(self.window)
        self.interactor.Initialize()

        factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
        factory.SetMRMLApplicationLogic(app_logic)
        for manager in SLICE_MANAGERS:
            if not factory.IsDisplayableManagerRegistered(manager):
                factory.RegisterDisplayableManager(manager)
        self.managers = slicer.vtkMRMLDisplayableManagerGroup()
        self.managers.Initialize(factory, self.renderer)

        self.logic = slicer.vtkMRMLSliceLogic()
        self.logic.SetMRMLApplicationLogic(app_logic)
        app_logic.GetSliceLogics().AddItem(self.logic)
        self.logic.SetMRMLScene(scene)
        self.node = self.logic.AddSliceNode(name)
        self.managers.SetMRMLDisplayableNode(self.node)

    def show(self, volume) -> np.ndarray:
        """Show `volume` in the background, fitted to the view; returns the rendered (H, W, 3) uint8 picture."""
        import vtk
        from vtk.util import numpy_support

        self.logic.GetSliceCompositeNode().SetBackgroundVolumeID(volume.GetID())
        self.node.SetOrientationToAxial()
        self.logic.ResizeSliceNode(self.size_px, self.size_px)
        self.logic.FitSliceToBackground()
        self.logic.SnapSliceOffsetToIJK()
        self.mapper.SetInputConnection(self.logic.GetImageDataConnection())
        self.managers.RequestRender()
        self.window.Render()
        grab = vtk.vtkWindowToImageFilter()
        grab.SetInput(self.window)
        grab.Update()
        image = grab.GetOutput()
        width, height, _ = image.GetDimensions()
        pixels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)
        return np.ascontiguousarray(pixels[::-1, :, :3])  # VTK's rows run bottom-up


class Slicer2D:
    """A scene with an application logic and named slice views, as Slicer's layout would hold them."""

    def __init__(self, scene):
        import slicer
        import vtk

        self.scene = scene
        self.app_logic = slicer.vtkMRMLApplicationLogic()
        self.app_logic.SetMRMLScene(scene)
        self.app_logic.SetSliceLogics(vtk.vtkCollection())
        self.views: dict[str, SliceView] = {}

    def view(self, name: str, size_px: int) -> SliceView:
        if name not in self.views:
            self.views[name] = SliceView(self.scene, self.app_logic, name, size_px)
        return self.views[name]

    def show_segmentations_in(self, placement: dict[str, list]) -> None:
        """Show each segmentation only in the views named for it (its display node's view list, as the Data module
        sets it), and hide the rest: photographs all sit at the origin, so every overlay would land in every view."""
        placed = {node.GetID(): [name for name, nodes in placement.items() if node in nodes]
                  for nodes in placement.values() for node in nodes}
        for index in range(self.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")):
            segmentation = self.scene.GetNthNodeByClass(index, "vtkMRMLSegmentationNode")
            display = segmentation.GetDisplayNode()
            views = placed.get(segmentation.GetID(), [])
            display.SetVisibility(bool(views))
            display.RemoveAllViewNodeIDs()
            for name in views:
                display.AddViewNodeID(self.view(name, 0).node.GetID())


def caption_bar(text: str, color: tuple[int, int, int], width: int, height: int = 26):
    """A caption in the view's colour, like the bar above a Slicer slice view."""
    from PIL import Image, ImageDraw, ImageFont

    bar = Image.new("RGB", (width, height), color)
    draw = ImageDraw.Draw(bar)
    font = ImageFont.load_default(size=15)
    draw.text((8, height // 2), text, fill=(20, 20, 20), font=font, anchor="lm")
    return bar


def compose(cells: list[list[tuple[np.ndarray, str, str]]], gap_px: int = 4, title: str | None = None):
    """Rows of (picture, caption, view colour name) → one PIL image, with a dark gap like Slicer's layout."""
    from PIL import Image, ImageDraw, ImageFont

    size = cells[0][0][0].shape[0]
    bar_px = 26
    title_px = 34 if title else 0
    columns = max(len(row) for row in cells)
    width = columns * size + (columns + 1) * gap_px
    height = title_px + len(cells) * (size + bar_px) + (len(cells) + 1) * gap_px
    canvas = Image.new("RGB", (width, height), (40, 40, 40))
    if title:
        ImageDraw.Draw(canvas).text((gap_px + 4, title_px // 2 + 2), title, fill=(235, 235, 235),
                                    font=ImageFont.load_default(size=18), anchor="lm")
    for r, row in enumerate(cells):
        for c, (picture, caption, color) in enumerate(row):
            x = gap_px + c * (size + gap_px)
            y = title_px + gap_px + r * (size + bar_px + gap_px)
            canvas.paste(caption_bar(caption, VIEW_COLORS[color], size, bar_px), (x, y))
            canvas.paste(Image.fromarray(picture), (x, y + bar_px))
    return canvas


def save_png(image, path: Path) -> Path:
    """PNG under MAX_PNG_BYTES: full colour when it fits, else a 256-colour palette (slice views have few colours
    once resampled)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)
    if path.stat().st_size > MAX_PNG_BYTES:
        image.quantize(256, method=2).save(path, optimize=True)  # 2 = MEDIANCUT
    if path.stat().st_size > MAX_PNG_BYTES:
        raise SystemExit(f"{path}: {path.stat().st_size} bytes, over {MAX_PNG_BYTES}")
    return path


def sample_data_screenshot(out: Path, view_px: int = 352) -> Path:
    """The Sample Data scene imported into a slicer-core scene: source pairs 1-2 (segmentation overlaid) and
    reference 1, in Red, Yellow and Green views."""
    import slicer

    from AlignFlowLib.mrml import ensure_segmentation_converters

    ensure_segmentation_converters()
    scene = slicer.vtkMRMLScene()
    scene.SetURL(str(SAMPLE_SCENE))
    if not scene.Import():
        raise SystemExit(f"{SAMPLE_SCENE}: the scene does not load; run Resources/make_sample_data.py")
    by_name = {scene.GetNthNode(i).GetName(): scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())}
    layout = Slicer2D(scene)
    placement = {"Red": ["AlignFlow source 1"], "Yellow": ["AlignFlow source 2"], "Green": ["AlignFlow reference 1"]}
    for name in placement:
        layout.view(name, view_px)
    layout.show_segmentations_in({view: [by_name[f"{volume} segmentation"] for volume in volumes
                                         if f"{volume} segmentation" in by_name]
                                  for view, volumes in placement.items()})
    row = []
    for view, (volume,) in placement.items():
        picture = layout.view(view, view_px).show(by_name[volume])
        labelled = f"{volume} segmentation" in by_name
        row.append((picture, f"{volume}" + (" + segmentation" if labelled else "  (unlabelled target)"), view))
    title = "AlignFlow sample data: labelled source pairs and an unlabelled target reference"
    return save_png(compose([row], title=title), out / "AlignFlow-sample-data.png")


def synthesize(run: Path, generator: str, out: Path, num: int, seed: int) -> Path:
    """`alignflow synthesize` from the real source masks, so stage 1 and aligned get the same masks and noise."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    subprocess.run([sys.executable, "-m", "AlignFlowLib.cli", "synthesize", "--run", str(run), "--num", str(num),
                    "--mask-source", "source", "--generator", generator, "--seed", str(seed), "--out", str(out),
                    "--device", "cpu", "--progress", "jsonl"], check=True, cwd=REPO, env=env,
                   stdout=subprocess.DEVNULL)
    return out


def references_of(run: Path, references: Path | None) -> Path | None:
    if references is not None:
        return references
    recorded = json.loads((run / "config.json").read_text()).get("inputs", {}).get("references")
    return Path(recorded) if recorded else None


def alignment_screenshot(out: Path, run: Path, references: Path | None, num: int = 3, seed: int = 0,
                         view_px: int = 256) -> Path:
    """Stage 1 (top row) vs aligned (bottom row) from the same masks and noise, loaded by the bridge as the module's
    "Show in scene" loads them (mask outline), with a target reference at the end of each row."""
    import slicer

    from AlignFlowLib.mrml import load_pair_folder, read_volume

    with tempfile.TemporaryDirectory() as tmp:
        folders = {generator: synthesize(run, generator, Path(tmp) / generator, num, seed)
                   for generator in ("stage1", "aligned")}
        scene = slicer.vtkMRMLScene()
        loaded = {generator: load_pair_folder(scene, folder, f"AlignFlow {generator}")[1]
                  for generator, folder in folders.items()}
        reference_files = sorted(p for p in (references or Path(tmp)).rglob("*") if p.suffix.lower() in
                                 (".png", ".jpg", ".nrrd", ".nii", ".mha"))[:2]
        reference_nodes = [read_volume(scene, path, f"reference {path.stem}") for path in reference_files]
        for volume in [pair.volume for pairs in loaded.values() for pair in pairs] + reference_nodes:
            # The photographs' own colours (Slicer's default auto window/level would stretch each one differently).
            volume.GetDisplayNode().AutoWindowLevelOff()
            volume.GetDisplayNode().SetWindowLevel(255, 127.5)
        for pairs in loaded.values():  # one outline colour for all (the bridge picks a random one per pair)
            for pair in pairs:
                pair.segmentation.GetSegmentation().GetNthSegment(0).SetColor(*OUTLINE_COLOR)
        layout = Slicer2D(scene)
        placement: dict[str, list] = {}
        rows = []  # per row: (view name, volume, caption, colour name)
        for r, generator in enumerate(("stage1", "aligned")):
            label = "stage 1" if generator == "stage1" else "aligned"
            row = [(f"{generator}{k}", pair.volume, f"{label}: pair {k + 1}", COLUMN_COLORS[k])
                   for k, pair in enumerate(loaded[generator])]
            placement.update({f"{generator}{k}": [pair.segmentation] for k, pair in enumerate(loaded[generator])})
            if r < len(reference_nodes):
                row.append((f"reference{r}", reference_nodes[r], f"target reference {r + 1}", "Slice4"))
            rows.append(row)
        for row in rows:
            for name, *_ in row:
                layout.view(name, view_px)
        layout.show_segmentations_in(placement)
        pictures = [[(layout.view(name, view_px).show(volume), caption, color) for name, volume, caption, color in row]
                    for row in rows]
    title = "Generated pairs, same masks and noise: stage 1 (top) vs aligned to the target references (bottom)"
    return save_png(compose(pictures, title=title), out / "AlignFlow-stage1-vs-aligned.png")


def make_run(folder: Path) -> tuple[Path, Path]:
    """A demo-preset run on the phantom domains (`alignflow train` + `align`): ~10-15 min on a 2-core CPU."""
    from AlignFlowLib.data.phantoms import write_phantom_dataset
    from AlignFlowLib.presets import DEMO

    paths = write_phantom_dataset(folder / "data", DEMO.data.image_size_px, 200, 10, 100, seed=0)
    run = folder / "run"
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    for args in (["train", "--source", str(paths.source), "--out", str(run), "--preset", "demo"],
                 ["align", "--run", str(run), "--references", str(paths.references)]):
        subprocess.run([sys.executable, "-m", "AlignFlowLib.cli", *args, "--device", "cpu", "--progress", "jsonl"],
                       check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    return run, paths.references


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--run", type=Path, help="a run folder with stage-1 and aligned generators")
    parser.add_argument("--references", type=Path, help="its target references (default: as recorded in the run)")
    parser.add_argument("--make-run", type=Path, metavar="DIR", help="first make a demo-preset run in DIR")
    args = parser.parse_args(argv)
    print(f"offscreen rendering: {probe_offscreen_gl()}")
    written = [sample_data_screenshot(args.out)]
    run, references = args.run, args.references
    if args.make_run:
        run, references = make_run(args.make_run)
    if run:
        written.append(alignment_screenshot(args.out, run, references_of(run, references)))
    for path in written:
        print(f"{path.stat().st_size:>8} B  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
