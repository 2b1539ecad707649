"""`alignflow serve` without a browser: what the page may reach, the job chain, run-folder reading, its MRML scene."""

from __future__ import annotations

import json
import locale
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from AlignFlowLib.serve import run_view
from AlignFlowLib.serve.jobs import RunJob, RunRequest, preview_folder, steps_for
from AlignFlowLib.serve.security import AccessError, ServedRoot, check_bind, check_upload, is_loopback

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


# ------------------------------------------------------------------ security
def test_paths_outside_the_root_are_refused(tmp_path):
    root = tmp_path / "root"
    (root / "data" / "source").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (root / "data" / "escape").symlink_to(tmp_path / "secret")
    (root / "data" / "inside").symlink_to(root / "data" / "source")
    served = ServedRoot(root)
    assert served.resolve("data/source") == (root / "data" / "source").resolve()
    assert served.resolve("data/inside") == (root / "data" / "source").resolve()  # a link within the root is fine
    for hostile in ("../secret", "data/../../secret", "/etc", str(tmp_path / "secret"), "data/escape",
                    "data/escape/x", "C:/Windows", "..\\secret"):
        with pytest.raises(AccessError):
            served.resolve(hostile)
    listed = served.folders()
    assert "data/source" in listed and "data/escape" not in listed and not any("secret" in f for f in listed)


def test_uploads_are_checked_by_size_type_and_content():
    assert check_upload("scan 1.png", PNG) == "scan_1.png"
    assert check_upload("../../etc/x.PNG", PNG) == "x.png"  # only the base name survives
    assert check_upload("a.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 8) == "a.jpg"
    with pytest.raises(AccessError, match="not a PNG"):
        check_upload("fake.png", b"#!/bin/sh\nrm -rf /\n")
    with pytest.raises(AccessError, match="not an image"):
        check_upload("run.sh", PNG)
    with pytest.raises(AccessError, match="upload limit"):
        check_upload("big.png", PNG + b"\x00" * 2000, max_bytes=1000)
    with pytest.raises(AccessError, match="empty"):
        check_upload("empty.png", b"")


def test_listening_beyond_this_machine_needs_a_token():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "a-long-enough-secret-token")
    with pytest.raises(Exception, match="--token"):
        check_bind("0.0.0.0", None)
    with pytest.raises(Exception, match="at least 16"):
        check_bind("0.0.0.0", "short")


@pytest.mark.parametrize("args, message", [
    (["--host", "0.0.0.0"], "--token"),
    (["--root", "/no/such/folder"], "must be an existing folder"),
    (["--runs", "../elsewhere"], "only folders under the served root"),
])
def test_serve_refuses_bad_options_with_one_line_and_exit_2(tmp_path, args, message):
    env = {k: v for k, v in os.environ.items() if k != "ALIGNFLOW_TOKEN"}
    args = args if "--root" in args else ["--root", str(tmp_path), *args]
    result = subprocess.run([sys.executable, "-m", "AlignFlowLib.cli", "serve", *args], capture_output=True,
                            text=True, timeout=120, cwd=REPO, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


# ------------------------------------------------------------------ jobs
class FakeRunner:
    """Stands in for ProcessRunner: replays events, then finishes with `code`."""

    def __init__(self, args, events, code=0):
        self.args, self._events, self.code = list(args), list(events), code
        self.finished = self.cancelled = False
        self.returncode = None
        self.error_message = None

    def poll(self):
        events, self._events = self._events, []
        if not events and not self.finished:
            self.finished, self.returncode = True, self.code
            if self.code:
                self.error_message = f"{self.args[0]} failed for a reason"
        return events

    def cancel(self):
        self.cancelled = True


def _request(tmp_path):
    return RunRequest(source=tmp_path / "src", references=tmp_path / "refs", out=tmp_path / "runs" / "r1",
                      preset="demo", device="cpu", config=tmp_path / "tiny.json", preview_pairs=4)


def test_a_run_then_two_previews_with_the_same_masks_and_seeds(tmp_path):
    steps = steps_for(_request(tmp_path), resume=False)
    assert [label for label, _ in steps] == ["run", "preview stage1", "preview aligned"]
    run_args = steps[0][1]
    assert run_args[0] == "run" and "--resume" not in run_args
    assert run_args[run_args.index("--config") + 1].endswith("tiny.json")
    # Resuming continues on what the run folder stored: nothing the page holds now can replace its inputs.
    resumed = steps_for(RunRequest(out=tmp_path / "runs" / "r1", device="cpu"), resume=True)[0][1]
    assert resumed == ["run", "--out", str(tmp_path / "runs" / "r1"), "--resume", "--device", "cpu"]
    previews = [args for _, args in steps[1:]]
    assert [a[a.index("--generator") + 1] for a in previews] == ["stage1", "aligned"]
    # only the generator and the output differ: same count, same seeds (the config's), same device
    strip = [[x for i, x in enumerate(a) if a[i - 1] not in ("--generator", "--out") and x not in
              ("--generator", "--out")] for a in previews]
    assert strip[0] == strip[1]
    assert previews[1][previews[1].index("--out") + 1] == str(preview_folder(tmp_path / "runs" / "r1", "aligned"))


def test_the_job_chain_reports_progress_and_stops_at_the_first_failure(tmp_path):
    made = []
    codes = iter([0, 3])

    def factory(args):
        made.append(FakeRunner(args, [{"event": "progress", "stage": "align", "step": 2, "total": 4,
                                       "eta_s": 5.0, "mmd": 0.25}, {"event": "log", "message": "hello"}],
                               next(codes)))
        return made[-1]

    job = RunJob(_request(tmp_path), runner_factory=factory)
    status = job.poll()
    assert (status["stage"], status["step"], status["total"], status["metrics"]) == ("align", 2, 4, {"mmd": 0.25})
    assert status["log"] == ["hello"]
    status = job.wait(5, interval_s=0)
    assert status["phase"] == "failed" and "failed for a reason" in status["message"]
    assert len(made) == 2  # the second step failed; the third never started


def test_cancel_leaves_the_job_cancelled(tmp_path):
    runner = FakeRunner(["run"], [{"event": "log", "message": "x"}] * 3)
    job = RunJob(_request(tmp_path), runner_factory=lambda args: runner)
    job.cancel()
    runner._events = []
    runner.finished, runner.returncode = True, 130
    assert job.poll()["phase"] == "cancelled" and "Resume" in job.status["message"]


# ------------------------------------------------------------------ run folder
def _pairs(folder: Path, names, value):
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for name in names:
        Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(folder / "images" / f"{name}.png")
        mask = np.zeros((8, 8), np.uint8)
        mask[2:6, 2:6] = 255
        Image.fromarray(mask).save(folder / "masks" / f"{name}.png")


def test_preview_pairs_wait_for_both_manifests_and_match_by_name(tmp_path):
    run = tmp_path / "run"
    _pairs(preview_folder(run, "stage1"), ["synth_0", "synth_1"], 10)
    _pairs(preview_folder(run, "aligned"), ["synth_0", "synth_1"], 200)
    (preview_folder(run, "stage1") / "manifest.json").write_text("{}")
    assert run_view.preview_pairs(run) == []  # the aligned preview is not complete yet
    (preview_folder(run, "aligned") / "manifest.json").write_text("{}")
    pairs = run_view.preview_pairs(run)
    assert [p["aligned"][0].stem for p in pairs] == ["synth_0", "synth_1"]
    assert pairs[1]["stage1"][1] == preview_folder(run, "stage1") / "masks" / "synth_1.png"


def test_curve_scores_and_references_from_a_run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert run_view.alignment_curve_svg(run) == "" and run_view.metric_rows(run) == []
    (run / "metrics.json").write_text(json.dumps({
        "align": {"eval_step": [0, 2, 4], "heldout_mmd": [3.0, 2.0, 1.5]},
        "target_test": {"source_only": {"mdice": 0.5, "miou": 0.4, "num_images": 3}}}))
    assert "<svg" in run_view.alignment_curve_svg(run) and "polyline" in run_view.alignment_curve_svg(run)
    assert run_view.metric_rows(run) == [{"model": "source only", "mdice": "0.500", "miou": "0.400"}]
    refs = tmp_path / "refs"
    _pairs(refs, ["a", "b"], 50)
    assert [p.name for p in run_view.reference_images(refs)] == ["a.png", "b.png"]


# ------------------------------------------------------------------ scene (slicer-core)
def test_pairs_load_as_volume_and_segment_shown_in_one_view_and_save_as_seg_nrrd(tmp_path):
    pytest.importorskip("slicer")
    import SimpleITK as sitk
    import slicer

    from AlignFlowLib.mrml import display as page_scene

    _pairs(tmp_path / "p", ["x"], 120)
    scene = slicer.vtkMRMLScene()
    volume, segmentation = page_scene.load_pair(scene, tmp_path / "p" / "images" / "x.png",
                                                tmp_path / "p" / "masks" / "x.png", "aligned",
                                                page_scene.ALIGNED_COLOUR)
    assert volume.IsA("vtkMRMLVectorVolumeNode") and segmentation.IsA("vtkMRMLSegmentationNode")
    page_scene.show_in_view(segmentation, "vtkMRMLSliceNodeAligned")
    assert segmentation.GetDisplayNode().GetViewNodeIDs() == ("vtkMRMLSliceNodeAligned",)
    mask = page_scene.mask_voxels(segmentation, volume)
    assert mask.shape == (1, 8, 8) and mask.sum() == 16 and mask[0, 2:6, 2:6].all()
    path = tmp_path / "out.seg.nrrd"
    path.write_bytes(page_scene.segmentation_file_bytes(segmentation))
    assert int(sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(bool).sum()) == 16
    page_scene.remove_nodes(scene, [volume, segmentation])
    assert scene.GetNodeByID(volume.GetID()) is None and scene.GetNodeByID(segmentation.GetID()) is None


def test_a_dicom_folder_loads_as_one_volume_with_its_geometry(tmp_path):
    pytest.importorskip("slicer")
    import SimpleITK as sitk
    import slicer

    from AlignFlowLib.mrml import display as page_scene
    from AlignFlowLib.mrml.nodes import array_from_volume

    series = tmp_path / "dicom"
    series.mkdir()
    voxels = (np.arange(3 * 6 * 5).reshape(3, 6, 5) * 10).astype(np.int16)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    # GDCM's DICOM writer leaves the process in the "C" locale (ASCII text I/O for every later test); put it back.
    saved_locale = locale.setlocale(locale.LC_ALL)
    for k in range(3):
        image = sitk.GetImageFromArray(voxels[k])
        image.SetSpacing((0.5, 0.5))
        for tag, value in (("0008|0060", "CT"), ("0020|000d", "1.2.826.0.1.3680043.2.1125.1"),
                           ("0020|000e", "1.2.826.0.1.3680043.2.1125.1.2"), ("0020|0013", str(k + 1)),
                           ("0020|0032", f"0\\0\\{2.0 * k}"), ("0020|0037", "1\\0\\0\\0\\1\\0"),
                           ("0018|0050", "2.0"), ("0008|0018", f"1.2.826.0.1.3680043.2.1125.1.2.{k + 1}")):
            image.SetMetaData(tag, value)
        writer.SetFileName(str(series / f"slice{k}.dcm"))
        try:
            writer.Execute(image)
        finally:
            locale.setlocale(locale.LC_ALL, saved_locale)
    scene = slicer.vtkMRMLScene()
    volume = page_scene.load_server_volume(scene, series)
    assert np.array_equal(array_from_volume(volume), voxels)
    assert volume.GetSpacing() == pytest.approx((0.5, 0.5, 2.0))
    (tmp_path / "empty").mkdir()
    with pytest.raises(OSError, match="no DICOM series"):
        page_scene.load_server_volume(scene, tmp_path / "empty")


def test_the_server_never_quits_for_lack_of_a_browser_and_always_has_a_secret(tmp_path, monkeypatch, capsys):
    pytest.importorskip("trame_slicer")
    import argparse

    from AlignFlowLib.cli import main
    from AlignFlowLib.serve import app

    started, tokens = {}, []

    class FakeServer:
        cli = argparse.ArgumentParser()

        def start(self, **options):
            started.update(options)

    class FakePage:
        server = FakeServer()

    monkeypatch.setattr(app, "build_app", lambda served, **options: FakePage())
    app.serve(ServedRoot(tmp_path), "127.0.0.1", 8123, "t" * 20)
    assert started["timeout"] == 0 and FakePage.server.cli.get_default("authKey") == "t" * 20
    monkeypatch.delenv("ALIGNFLOW_TOKEN", raising=False)
    monkeypatch.setattr(app, "serve", lambda served, host, port, token, **options: tokens.append(token))
    assert main(["serve", "--root", str(tmp_path)]) == 0
    url = capsys.readouterr().out.strip()
    assert len(tokens) == 1 and len(tokens[0]) >= 16 and url.endswith(f"/?secret={tokens[0]}")


def test_serve_listens_on_this_machine_only_by_default():
    from AlignFlowLib.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and is_loopback(args.host) and args.runs == "runs"
