"""bench/shifted_target.py (the positive control's camera shift) on known answers and on a tiny polyp layout."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SPEC = importlib.util.spec_from_file_location("shifted_target",
                                              Path(__file__).resolve().parents[1] / "bench" / "shifted_target.py")
shifted = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(shifted)


def test_hue_rotation_keeps_grey_and_a_third_of_a_turn_permutes_the_channels():
    assert shifted.hue_rotation(120) @ np.array([1.0, 0.0, 0.0]) == pytest.approx([0.0, 1.0, 0.0], abs=1e-12)
    quarter = shifted.hue_rotation(90)
    assert quarter @ np.ones(3) == pytest.approx(np.ones(3))                  # grey stays grey
    assert quarter @ quarter.T == pytest.approx(np.eye(3))                    # a rotation: lengths kept
    red = np.array([0.8, 0.45, 0.35])
    turned = quarter @ red
    assert turned.sum() == pytest.approx(red.sum()) and turned.argmax() == 1  # same brightness, now green first


def test_fall_off_darkens_the_corners_and_gamma_lifts_the_shadows():
    flat = np.full((5, 7, 3), 200, dtype=np.uint8)
    vignetted = shifted.shift_image(flat, hue_degrees=0, gamma=1.0, vignette=0.6).astype(float)
    assert vignetted[2, 3] == pytest.approx([200] * 3, abs=0.5)              # the centre keeps its value
    for corner in (vignetted[0, 0], vignetted[0, -1], vignetted[-1, 0], vignetted[-1, -1]):
        assert corner == pytest.approx([80] * 3, abs=0.5)                     # 200 x (1 - 0.6)
    dark = np.full((3, 3, 3), 64, dtype=np.uint8)
    lifted = shifted.shift_image(dark, hue_degrees=0, gamma=0.6, vignette=0.0)
    assert lifted[1, 1, 0] == round(255 * (64 / 255) ** 0.6)


def test_the_copy_shifts_only_the_target_frames(tmp_path, monkeypatch):
    data = tmp_path / "polyp"
    for dataset in ("kvasir_seg", "cvc_clinicdb"):
        for kind in ("images", "masks"):
            (data / dataset / kind).mkdir(parents=True)
        Image.fromarray(np.full((4, 6, 3), (180, 90, 60), dtype=np.uint8)).save(data / dataset / "images" / "1.png")
        Image.fromarray(np.full((4, 6), 255, dtype=np.uint8)).save(data / dataset / "masks" / "1.png")
    (data / "splits.json").write_text(json.dumps({"source": {"dataset": "kvasir_seg"},
                                                  "target": {"dataset": "cvc_clinicdb"}}))
    (data / "cvc_clinicdb" / "sequences.json").write_text(json.dumps({"1": 1}))
    out = tmp_path / "shifted"
    monkeypatch.setattr("sys.argv", ["shifted_target.py", "--data", str(data), "--out", str(out)])
    assert shifted.main() == 0
    frame = np.asarray(Image.open(out / "cvc_clinicdb" / "images" / "1.png"))
    centre = frame[1:3, 2:4].reshape(-1, 3).mean(0)
    assert centre.argmax() == 1                                               # red first before, green first now
    source = np.asarray(Image.open(out / "kvasir_seg" / "images" / "1.png"))
    assert (source == (180, 90, 60)).all()                                    # the source is the original
    assert (out / "cvc_clinicdb" / "masks").is_symlink() and (out / "cvc_clinicdb" / "sequences.json").is_file()
    assert json.loads((out / "shift.json").read_text())["hue_degrees"] == 90.0
    # Asked again: the finished copy is kept as it is; with another shift it is refused, not half rewritten.
    (out / "cvc_clinicdb" / "images" / "1.png").write_bytes(b"kept")
    assert shifted.main() == 0
    assert (out / "cvc_clinicdb" / "images" / "1.png").read_bytes() == b"kept"
    monkeypatch.setattr("sys.argv", ["shifted_target.py", "--data", str(data), "--out", str(out), "--gamma", "0.8"])
    assert shifted.main() == 2
    assert (out / "cvc_clinicdb" / "images" / "1.png").read_bytes() == b"kept"
