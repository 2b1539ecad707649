"""The run folder: one directory holds everything a run makes, so it can be resumed, inspected and shared.

    RUN/config.json                   resolved RunConfig + the input folders it was started with
    RUN/events.jsonl                  every progress/log/done/error event
    RUN/checkpoints/*.pt              atomic checkpoints (`*_last.pt` are the resume points)
    RUN/source_segmenter/exported/    frozen source-only segmenter (mask-consistency term, baseline)
    RUN/synthetic/                    generated pairs (images/, masks/, manifest.json)
    RUN/segmenter/exported/           the final segmenter (model.safetensors + model.json)
    RUN/metrics.json, RUN/report.html
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import write_json_atomic
from .config import RunConfig, from_dict, to_dict, validate
from .errors import RunFolderError, UsageError
from .version import __version__


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def events_path(self) -> Path:
        return self.root / "events.jsonl"

    def checkpoint(self, name: str) -> Path:
        return self.root / "checkpoints" / f"{name}.pt"

    @property
    def image_generator(self) -> Path:
        return self.checkpoint("image_generator_last")

    @property
    def mask_generator(self) -> Path:
        return self.checkpoint("mask_generator_last")

    @property
    def align_state(self) -> Path:
        return self.checkpoint("align_last")

    @property
    def aligned_generator(self) -> Path:
        return self.checkpoint("aligned_generator")

    @property
    def source_segmenter(self) -> Path:
        return self.root / "source_segmenter"

    @property
    def synthetic(self) -> Path:
        return self.root / "synthetic"

    @property
    def segmenter(self) -> Path:
        return self.root / "segmenter"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.json"

    @property
    def report_path(self) -> Path:
        return self.root / "report.html"

    def has_checkpoints(self) -> bool:
        return any((self.root / "checkpoints").glob("*.pt"))

    def save_config(self, config: RunConfig, inputs: dict[str, Any]) -> None:
        validate(config)  # a value that makes no sense never reaches a run folder
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.config_path, {"library_version": __version__, "inputs": inputs,
                                             "config": to_dict(config)})
        if os.environ.get("WORLD_SIZE", "1") != "1":  # torchrun: rank 0 wrote it, every rank reads it next
            from .distributed import barrier

            barrier()

    def load_config(self) -> tuple[RunConfig, dict[str, Any]]:
        if not self.config_path.is_file():
            raise RunFolderError("is not an AlignFlow run folder (no config.json); run `alignflow train` first",
                                 self.root)
        try:
            stored = json.loads(self.config_path.read_text())
            config = from_dict(RunConfig, stored["config"])
        except (ValueError, KeyError, TypeError) as error:
            raise RunFolderError(f"config.json does not parse ({error})", self.config_path) from error
        try:
            validate(config)
        except UsageError as error:  # edited by hand, or written by another version
            raise UsageError(str(error), self.config_path) from None
        return config, stored.get("inputs", {})

    def update_inputs(self, **inputs: Any) -> None:
        config, stored = self.load_config()
        stored.update({k: v for k, v in inputs.items() if v is not None})
        self.save_config(config, stored)

    def read_metrics(self) -> dict[str, Any]:
        return json.loads(self.metrics_path.read_text()) if self.metrics_path.is_file() else {}

    def update_metrics(self, **sections: Any) -> None:
        metrics = self.read_metrics()
        metrics.update(sections)
        write_json_atomic(self.metrics_path, metrics)
