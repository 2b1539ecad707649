"""The extension's pictures: the icon and screenshot URLs in CMakeLists.txt name files of this repository that exist
and are sensible PNGs, the README shows one of them, and the screenshot script's slice view really draws a volume
with a segmentation blended over it (in a child process: without a working GL, VTK crashes instead of raising)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from slicer_helpers import REPO

RAW_PREFIX = "https://raw.githubusercontent.com/alignflow/AlignFlow/main/"  # the form CMakeLists.txt uses
SCREENSHOT_SCRIPT = REPO / "Resources" / "make_screenshots.py"


def _cmake_urls(key: str) -> list[str]:
    match = re.search(rf'set\({key} "([^"]+)"\)', (REPO / "CMakeLists.txt").read_text())
    assert match, f"{key} not set in CMakeLists.txt"
    return match.group(1).split()


def _repo_file(url: str) -> Path:
    assert url.startswith(RAW_PREFIX), f"{url}: not a raw URL of this repository's main branch"
    path = REPO / url[len(RAW_PREFIX):]
    assert path.is_file(), f"{url} points at {path.relative_to(REPO)}, which does not exist"
    return path


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG", path
        image.verify()
    with Image.open(path) as image:
        image.load()  # decodes completely: a truncated file fails here
        return image.size


def test_icon_url_names_a_128_px_png_in_resources():
    (url,) = _cmake_urls("EXTENSION_ICONURL")
    path = _repo_file(url)
    assert path.relative_to(REPO).parts[0] == "Resources"
    assert _png_size(path) == (128, 128)
    assert path.stat().st_size < 50_000


def test_screenshot_urls_name_every_screenshot_and_each_is_a_sensible_png():
    urls = _cmake_urls("EXTENSION_SCREENSHOTURLS")
    paths = [_repo_file(url) for url in urls]
    assert len(set(paths)) == len(paths) >= 1
    shipped = sorted((REPO / "Resources" / "Screenshots").glob("*.png"))
    assert sorted(paths) == shipped, "every screenshot in Resources/Screenshots is listed, and only those"
    for path in paths:
        width, height = _png_size(path)
        assert 600 <= width <= 2400 and 250 <= height <= 1600, (path.name, width, height)
        assert path.stat().st_size < 300_000, path.name


def test_readme_shows_a_screenshot_from_resources():
    text = (REPO / "README.md").read_text()
    pictures = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text) + re.findall(r'<img[^>]+src="([^"]+)"', text)
    in_resources = [p for p in pictures if p.startswith("Resources/")]
    assert in_resources, "README shows no picture from Resources/"
    for picture in in_resources:
        assert (REPO / picture).is_file(), picture
    use_in_slicer = text[text.index("## Use in 3D Slicer"):]
    assert re.search(r"!\[[^\]]*\]\(Resources/Screenshots/", use_in_slicer.split("\n## ")[0])


def test_screenshot_script_documents_how_to_regenerate_what_it_writes():
    text = SCREENSHOT_SCRIPT.read_text()
    doc = text.split('"""')[1]
    for path in sorted((REPO / "Resources" / "Screenshots").glob("*.png")):
        assert path.name in doc and f'"{path.name}"' in text, path.name
    assert "make_screenshots.py" in doc and "EGL" in doc


_RENDER = r"""
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np, slicer
import make_screenshots as shots
from AlignFlowLib import mrml

scene = slicer.vtkMRMLScene()
image = np.zeros((32, 32, 3), np.uint8); image[..., 2] = 200                     # blue photograph
volume = mrml.volume_from_array(scene, image, "photo", rgb=True)
volume.GetDisplayNode().AutoWindowLevelOff(); volume.GetDisplayNode().SetWindowLevel(255, 127.5)
segmentation = mrml.segmentation_for(scene, volume, "photo segmentation")
mask = np.zeros((32, 32), bool); mask[8:24, 8:24] = True
segment = segmentation.GetSegmentation().AddEmptySegment("lesion", "lesion", [1.0, 0.0, 0.0])
mrml.write_mask_to_segment(segmentation, segment, mask, volume)
segmentation.GetDisplayNode().SetOpacity2DFill(0.5)
layout = shots.Slicer2D(scene)
view = layout.view("Red", 64)
layout.show_segmentations_in({"Red": [segmentation]})
picture = view.show(volume)
np.save(sys.argv[2], picture)
"""


def test_slice_view_draws_the_volume_with_the_segmentation_blended_over_it(tmp_path):
    pytest.importorskip("slicer")
    code = "import sys; sys.path.insert(0, sys.argv[1]); import make_screenshots as s; print(s.probe_offscreen_gl())"
    probe = subprocess.run([sys.executable, "-c", code, str(SCREENSHOT_SCRIPT.parent)], capture_output=True, text=True,
                           timeout=180)
    if probe.returncode != 0:
        pytest.skip(f"no offscreen OpenGL here: {probe.stdout[-300:]}{probe.stderr[-300:]}")
    out = tmp_path / "picture.npy"
    result = subprocess.run([sys.executable, "-c", _RENDER, str(SCREENSHOT_SCRIPT.parent), str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    import numpy as np

    picture = np.load(out).astype(int)
    assert picture.shape == (64, 64, 3)
    centre, corner = picture[32, 32], picture[3, 3]
    assert abs(corner[2] - 200) < 10 and corner[0] < 10  # the photograph, in its own colours
    # Inside the lesion: half red fill over the blue image, i.e. blended with it (not with the black background).
    assert abs(centre[0] - 128) < 15 and abs(centre[2] - 100) < 15, centre
