"""The protocol on any data: a labelled source pair folder, a folder of target reference images (the pool the
reference sets are drawn from) and a labelled target test pair folder, so a hospital can check the claim on its own
scans with nothing tuned for them.

Reference sets are drawn as the protocol says (K ∈ reference_k, seeds reference_seeds) from the sorted pool; a
pool smaller than K skips that K. Optional: a source validation pair folder (recipe check) and a JSON file that maps
each test image stem to a cluster (e.g. patient or video), for the cluster bootstrap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.folders import ImageSet, load_pairs, load_references
from ..errors import InputDataError
from ..events import EventCallback, StageProgress, ignore_events
from .protocol import BenchData, bench_config, load_protocol, run_benchmark


def draw_reference_sets(pool: ImageSet, ks: list[int], seeds: list[int]) -> dict[str, ImageSet]:
    """K{k}_seed{s}: k distinct images of the pool, drawn with numpy's generator seeded by s (order-free names)."""
    order = sorted(range(len(pool)), key=lambda i: pool.names[i])
    sets = {}
    for k in sorted(ks, reverse=True):
        if k > len(pool):
            continue
        for seed in seeds:
            chosen = sorted(np.random.default_rng(seed).choice(len(order), size=k, replace=False).tolist())
            index = torch.tensor([order[i] for i in chosen])
            sets[f"K{k}_seed{seed}"] = ImageSet(pool.images[index], [pool.names[i] for i in index.tolist()])
    return sets


def read_clusters(path: Path | None, names: list[str]) -> list[str]:
    if path is None:
        return list(names)
    try:
        mapping = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise InputDataError(f"cannot be read as a JSON object of test stem → cluster ({error})", path) from error
    if not isinstance(mapping, dict):
        raise InputDataError("must be a JSON object mapping each test image stem to a cluster name", path)
    missing = [n for n in names if n not in mapping]
    if missing:
        raise InputDataError(f"names no cluster for test image(s) {', '.join(missing[:5])}", path)
    return [str(mapping[n]) for n in names]


def run_pairs_benchmark(source: Path, references: Path, test: Path, out_dir: Path, preset_name: str,
                        device: torch.device, on_event: EventCallback = ignore_events, source_val: Path | None = None,
                        clusters: Path | None = None, overrides: tuple[str, ...] = (),
                        methods: tuple[str, ...] | None = None, resume: bool = False,
                        workers: int = 1, segmenter_seeds: int | None = None,
                        reference_sets: tuple[str, ...] | None = None,
                        reuse_stage1: Path | None = None) -> dict[str, Any]:
    """`reference_sets` keeps a subset of the drawn sets (an ablation on fewer K); `reuse_stage1` is an earlier output
    folder of the same data whose stage-1 generators are reused; see `protocol.run_benchmark` for the rest."""
    protocol = load_protocol()
    config = bench_config(preset_name, overrides)
    pool = load_references(Path(references), config.data)
    sets = draw_reference_sets(pool, protocol["reference_k"], protocol["reference_seeds"])
    if reference_sets:
        unknown = sorted(set(reference_sets) - set(sets))
        if unknown:
            raise InputDataError(f"gives no reference set(s) {', '.join(unknown)} (drawn: {', '.join(sets) or 'none'})",
                                 Path(references))
        sets = {name: sets[name] for name in reference_sets}
    if len(pool) < max(protocol["reference_k"]):
        StageProgress(on_event, "bench", 1).log(f"{len(pool)} reference images: K above that is skipped")
    test_pairs = load_pairs(Path(test), config.data)
    data = BenchData(name=f"pairs: {Path(source).name} -> {Path(test).name}",
                     source=load_pairs(Path(source), config.data),
                     source_val=load_pairs(Path(source_val), config.data) if source_val else None,
                     test=test_pairs, test_clusters=read_clusters(clusters, test_pairs.names),
                     references=sets, source_dir=Path(source),
                     folders={"source": str(source), "source_val": source_val and str(source_val),
                              "pool": str(references), "test": str(test), "clusters": clusters and str(clusters)})
    return run_benchmark(data, out_dir, preset_name, device, on_event, overrides, methods, reuse_stage1, tuple(sets),
                         resume, workers, segmenter_seeds)
