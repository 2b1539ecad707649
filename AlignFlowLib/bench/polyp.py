"""Kvasir-SEG → CVC-ClinicDB under the protocol, following `splits.json` exactly.

Source = `source.train` (segmenters, generators) and `source.val` (recipe check, judge sanity check); references =
`target.references[K{k}_seed{s}]`, images only (their masks are never read); scores only on `target.test`, whose
frames are grouped by `sequences.json` (near-duplicate video frames) for the cluster bootstrap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..data.folders import load_pairs, load_references
from ..errors import InputDataError, choose
from ..events import EventCallback, ignore_events
from .protocol import (BENCH_PRESETS, BenchData, bench_config, load_protocol, protocol_reference_sets,
                       run_benchmark)


def read_splits(data_root: Path) -> dict[str, Any]:
    path = Path(data_root) / "splits.json"
    if not path.is_file():
        raise InputDataError("splits.json not found (expected the layout of ../shared/data/polyp)", path)
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise InputDataError(f"does not parse as JSON ({error})", path) from error


def test_clusters(target_dir: Path, test_ids: list[str]) -> list[str]:
    """Sequence of every test frame from `sequences.json` (frame → sequence); without that file each frame is its
    own cluster, which is what a plain (unclustered) bootstrap assumes."""
    path = Path(target_dir) / "sequences.json"
    if not path.is_file():
        return list(test_ids)
    try:
        sequences = json.loads(path.read_text())
    except ValueError as error:
        raise InputDataError(f"does not parse as JSON ({error})", path) from error
    missing = [i for i in test_ids if str(i) not in sequences]
    if missing:
        raise InputDataError(f"names no sequence for test frame(s) {', '.join(missing[:5])}", path)
    return [f"sequence_{sequences[str(i)]}" for i in test_ids]


def load_polyp(data_root: Path, preset_name: str, overrides: tuple[str, ...] = (),
               reference_sets: tuple[str, ...] | None = None) -> BenchData:
    bench = choose("benchmark preset", preset_name, BENCH_PRESETS)
    config = bench_config(preset_name, overrides)
    data_root = Path(data_root)
    splits = read_splits(data_root)
    source_dir = data_root / splits["source"]["dataset"]
    target_dir = data_root / splits["target"]["dataset"]
    wanted = tuple(reference_sets or bench.reference_sets or protocol_reference_sets())
    available = splits["target"]["references"]
    missing = sorted(set(wanted) - set(available))
    if missing:
        raise InputDataError(f"has no reference set(s) {', '.join(missing)}", data_root / "splits.json")
    test_ids = splits["target"]["test"][: bench.max_test_images]
    return BenchData(
        name="polyp: kvasir_seg -> cvc_clinicdb",
        source=load_pairs(source_dir, config.data, splits["source"]["train"][: bench.max_source_pairs]),
        source_val=load_pairs(source_dir, config.data, splits["source"]["val"]),
        test=load_pairs(target_dir, config.data, test_ids),
        test_clusters=test_clusters(target_dir, test_ids),
        references={name: load_references(target_dir / "images", config.data, available[name]) for name in wanted},
        source_dir=source_dir, folders={"root": str(data_root)},
        notes={"reference_sets_seen_before_protocol":
               load_protocol()["polyp"]["reference_sets_seen_before_protocol"]})


def run_polyp_benchmark(data_root: Path, out_dir: Path, preset_name: str, device: torch.device,
                        on_event: EventCallback = ignore_events, overrides: tuple[str, ...] = (),
                        methods: tuple[str, ...] | None = None, reuse_stage1: Path | None = None,
                        reference_sets: tuple[str, ...] | None = None, resume: bool = False,
                        workers: int = 1, segmenter_seeds: int | None = None) -> dict[str, Any]:
    """The protocol on the fixed polyp splits; see `protocol.run_benchmark` for the arguments."""
    data = load_polyp(data_root, preset_name, overrides, reference_sets)
    return run_benchmark(data, out_dir, preset_name, device, on_event, overrides, methods, reuse_stage1,
                         tuple(data.references), resume, workers, segmenter_seeds)
