"""`alignflow serve` in a real browser: the system Chromium driven by playwright against the real server, asserting on
the page's DOM and on the pixels of the streamed Slicer views (phantom data, a configuration that trains in seconds).

Needs Debian's `chromium`, playwright, trame-slicer and an OpenGL that VTK can render with headless (Mesa EGL);
`make test` installs them. Where one cannot exist the tests skip saying why, except under CI, where they must run.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config
from ports import free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
GL_PROBE = ("import vtk; w = vtk.vtkRenderWindow(); w.SetOffScreenRendering(1); w.AddRenderer(vtk.vtkRenderer()); "
            "w.SetSize(8, 8); w.Render(); print('ok')")
TOKEN = "browser-test-token-0123456789"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _missing_prerequisite() -> str | None:
    if _chromium() is None:
        return "no system Chromium (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
        import trame_slicer  # noqa: F401
    except ImportError as error:
        return f"{error.name} is not installed"
    # A process without any GL crashes in VTK instead of raising, so the probe runs in a child.
    probe = subprocess.run([sys.executable, "-c", GL_PROBE], capture_output=True, text=True, timeout=120)
    if probe.returncode != 0 or "ok" not in probe.stdout:
        return (f"VTK cannot render headless here (probe exit {probe.returncode}); apt-get install libegl1 "
                "libegl-mesa0 libgl1-mesa-dri")
    return None


@pytest.fixture(scope="module")
def prerequisites():
    reason = _missing_prerequisite()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests, but {reason}")
        pytest.skip(reason)


class Server:
    def __init__(self, root: Path, *extra: str, attempts: int = 3):
        # A port found free can be taken before the server binds it (the other xdist worker runs gloo ranks), so a
        # server that exits because its port is in use is started again on a new one; any other exit is an error.
        for _ in range(attempts):
            if self._start(root, extra):
                return
        raise RuntimeError(f"the server found its port in use {attempts} times: {self.log.read_text()[-2000:]}")

    def _start(self, root: Path, extra: tuple[str, ...]) -> bool:
        """True when the server answers; False when it could not bind its port."""
        self.port = free_port()
        self.log = root.parent / f"serve-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if k not in ("ALIGNFLOW_TOKEN", "TRAME_ARGS")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "AlignFlowLib.cli", "serve", "--root", str(root), "--port", str(self.port),
             "--device", "cpu", "--encoder", "png", *extra],
            cwd=REPO, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log.read_text()
                if "address already in use" in log.lower():
                    return False
                raise RuntimeError(f"the server exited: {log[-2000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=2).read()
                return True
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("the server did not start in 120 s")

    def url(self, query: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{query}"

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def served_root(prerequisites, tmp_path_factory):
    import SimpleITK as sitk

    from AlignFlowLib.config import to_dict
    from AlignFlowLib.data.phantoms import write_phantom_dataset

    root = tmp_path_factory.mktemp("served") / "root"
    paths = write_phantom_dataset(root / "data", size_px=32, num_source=48, num_references=6, num_target_test=12,
                                  seed=0)
    (root / "tiny.json").write_text(json.dumps({"config": to_dict(tiny_config(
        image_steps=20, mask_steps=10, align_steps=4, segmenter_steps=10, checkpoint_every=5))}))
    slices = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((paths.target_test / "images").iterdir())[:3]]
    volume = sitk.GetImageFromArray(np.stack(slices), isVector=True)
    volume.SetSpacing((0.5, 0.5, 2.0))
    sitk.WriteImage(volume, str(root / "data" / "volume.nrrd"))
    return root


@pytest.fixture(scope="module")
def server(served_root):
    """With a token, as on a shared GPU server (the page opens with ?secret=)."""
    running = Server(served_root, "--max-upload-mb", "0.2", "--token", TOKEN)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser(prerequisites):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    opened = context.new_page()
    opened.goto(server.url(f"?secret={TOKEN}"))
    opened.wait_for_selector("#af-tab-run", timeout=60_000)
    yield opened
    context.close()


def _screenshots() -> Path | None:
    folder = os.environ.get("ALIGNFLOW_SCREENSHOTS")
    return Path(folder) if folder else None


def choose(page, field: str, text: str) -> None:
    """Pick `text` in a Vuetify select the way a user does: open the menu, click the item."""
    page.click(f"#{field}", force=True)
    item = page.locator(".v-overlay-container .v-list-item-title", has_text=re.compile(f"^{re.escape(text)}$"))
    item.first.click()
    page.wait_for_timeout(200)


def wait_text(page, selector: str, predicate, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        text = page.inner_text(selector) if page.locator(selector).count() else ""
        if predicate(text):
            return text
        page.wait_for_timeout(300)
    raise AssertionError(f"{selector} still reads {text!r} after {timeout_s:.0f} s")


def view_pixels(page, index: int) -> np.ndarray:
    """The streamed image of the index-th view in the current layout, as (H, W, 3) int."""
    png = page.locator("#af-views img.image-display-area").nth(index).screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def pixels_after_change(page, index: int, before: np.ndarray, timeout_s: float = 15) -> np.ndarray:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        page.wait_for_timeout(300)
        after = view_pixels(page, index)
        if after.shape == before.shape and np.abs(after - before).sum(-1).max() > 30:
            return after
    raise AssertionError(f"view {index} did not change in {timeout_s} s")


def overlay_change(with_masks: np.ndarray, without: np.ndarray, colour) -> tuple[float, float]:
    """(fraction of the picture's pixels the overlay changed, how well the change points towards `colour`)."""
    delta = with_masks - without
    changed = np.abs(delta).sum(-1) > 30
    picture = without.sum(-1) > 0  # the image itself; the view around it is black
    direction = np.asarray(colour, float) - 0.5
    towards = float((delta[changed] @ direction).mean()) if changed.any() else 0.0
    return float(changed.sum() / max(picture.sum(), 1)), towards


def test_a_hostile_page_cannot_reach_outside_the_root(page):
    """The page offers only folders under the root, but a client can send any state: the server checks again."""
    page.evaluate("() => { window.trame.state.set('af_source', '../..'); "
                  "window.trame.state.set('af_references', 'data/target_references'); }")
    page.click("#af-start")
    assert "only folders under the served root" in wait_text(page, "#af-error", bool, 20)
    page.evaluate("() => window.trame.state.set('af_source', null)")


def test_uploads_are_saved_only_when_they_are_what_they_claim(page, served_root, tmp_path):
    good = tmp_path / "ref 1.png"
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(good)
    page.set_input_files("#af-upload", str(good))
    saved = wait_text(page, "#af-uploaded", lambda t: "saved in" in t, 30)
    folder = served_root / saved.split("saved in ")[-1].strip()
    assert (folder / "ref_1.png").read_bytes() == good.read_bytes()

    fake = tmp_path / "fake.png"
    fake.write_text("<script>alert(1)</script>")
    page.set_input_files("#af-upload", str(fake))
    assert "not a PNG" in wait_text(page, "#af-error", lambda t: "fake.png" in t, 30)
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(300_000))
    page.set_input_files("#af-upload", str(huge))
    assert "upload limit" in wait_text(page, "#af-error", lambda t: "huge.png" in t, 30)
    assert not list(served_root.rglob("fake.png")) and not list(served_root.rglob("huge.png"))


def test_run_streams_progress_cancels_resumes_and_previews_pairs(page, served_root):
    page.click("#af-tab-run")
    choose(page, "af-source", "data/source")
    choose(page, "af-references", "data/target_references")
    choose(page, "af-test", "data/target_test")
    choose(page, "af-preset", "demo")
    choose(page, "af-device", "cpu")
    choose(page, "af-config", "tiny.json")
    page.fill("#af-run-name", "phantom")
    page.wait_for_timeout(500)
    page.click("#af-start")
    # progress streams in: a stage name and a step count above zero
    wait_text(page, "#af-stage", lambda t: re.search(r"\b[1-9]\d*/\d+", t) is not None, 180)
    page.click("#af-cancel")
    assert wait_text(page, "#af-phase", lambda t: t in ("cancelled", "failed", "done"), 120) == "cancelled"
    assert (served_root / "runs" / "phantom" / "config.json").is_file()
    assert page.locator("#af-start").is_disabled() and not page.locator("#af-resume").is_disabled()

    page.click("#af-resume")
    wait_text(page, "#af-phase", lambda t: t == "running", 30)
    assert wait_text(page, "#af-phase", lambda t: t in ("cancelled", "failed", "done"), 600) == "done", \
        page.inner_text("#af-message")
    label = wait_text(page, "#af-pair-label", lambda t: t.startswith("pair 1 of"), 30)
    count = int(re.search(r"of (\d+)", label).group(1))
    assert count == 8
    assert page.locator("#af-scores").count() == 1 and "mDice" in page.inner_text("#af-scores")
    assert "<svg" in page.inner_html("#af-curve")

    # The aligned view shows pair 1's mask as an overlay of the aligned colour, over the mask's share of the picture.
    page.wait_for_timeout(2000)
    with_masks = view_pixels(page, 2)
    page.click("#af-show-masks")
    without = pixels_after_change(page, 2, with_masks)
    from AlignFlowLib.mrml.display import ALIGNED_COLOUR

    changed, towards = overlay_change(with_masks, without, ALIGNED_COLOUR)
    mask_file = served_root / "runs" / "phantom" / "preview" / "aligned" / "masks" / (label.split(": ")[-1] + ".png")
    mask_fraction = float((np.asarray(Image.open(mask_file)) > 127).mean())
    assert towards > 0
    assert 0.5 * mask_fraction <= changed <= 1.5 * mask_fraction + 0.05, (changed, mask_fraction)
    page.click("#af-show-masks")
    pixels_after_change(page, 2, without)

    before = view_pixels(page, 1)
    page.click("#af-next")
    wait_text(page, "#af-pair-label", lambda t: t.startswith("pair 2 of 8"), 20)
    pixels_after_change(page, 1, before)  # the stage-1 view moved to the next pair too
    if _screenshots():
        page.screenshot(path=str(_screenshots() / "serve-preview.png"))


def test_apply_segmenter_shows_it_in_2d_and_3d_and_downloads_seg_nrrd(page, served_root, tmp_path):
    import SimpleITK as sitk

    page.click("#af-tab-apply")
    page.wait_for_timeout(500)
    choose(page, "af-volume", "data/volume.nrrd")
    choose(page, "af-model", "runs/phantom/segmenter/exported")
    page.click("#af-apply")
    message = wait_text(page, "#af-apply-message", lambda t: "voxels" in t or "fail" in t, 180)
    voxels = int(re.search(r"(\d+) voxels", message).group(1))
    with page.expect_download() as download:
        page.click("#af-download")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.name.endswith(".seg.nrrd")
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    assert int(labels.astype(bool).sum()) == voxels > 0

    from AlignFlowLib.mrml.display import PREDICTION_COLOUR

    page.wait_for_timeout(2000)
    three_d = view_pixels(page, 1)
    green = (three_d[..., 1] > three_d[..., 0] + 60) & (three_d[..., 1] > three_d[..., 2] + 60)
    assert green.mean() > 0.01  # the segment's surface in the 3-D view
    with_masks = view_pixels(page, 0)
    page.click("#af-show-masks")
    without = pixels_after_change(page, 0, with_masks)
    changed, towards = overlay_change(with_masks, without, PREDICTION_COLOUR)
    middle = labels[labels.shape[0] // 2].astype(bool).mean()
    assert towards > 0 and 0.5 * middle <= changed <= 1.5 * middle + 0.05, (changed, middle)
    page.click("#af-show-masks")
    pixels_after_change(page, 0, without)
    if _screenshots():
        page.screenshot(path=str(_screenshots() / "serve-apply.png"))


def test_with_a_token_the_page_gets_nothing_without_it(browser, server):
    context = browser.new_context()
    stranger = context.new_page()
    start = time.monotonic()
    stranger.goto(server.url(f"?secret={TOKEN}"))
    stranger.wait_for_selector("#af-tab-run", timeout=60_000)
    with_token_s = time.monotonic() - start
    for query in ("", "?secret=wslink-secret", "?secret=browser-test-token-wrong"):
        stranger.goto(server.url(query))
        # three times as long as the page took with the token: a slow page cannot pass for a refused one
        stranger.wait_for_timeout(max(3000, 3000 * with_token_s))
        assert stranger.locator("#af-tab-run").count() == 0, query  # no state, no page, no runs
    context.close()
