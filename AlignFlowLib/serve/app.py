"""The trame page: run panel, preview in real Slicer slice views, apply a segmenter in 2-D and 3-D views.

One scene, rendered headless by trame-slicer and streamed to the page. Two layouts share it: "preview" (reference,
stage-1 pair and aligned pair side by side, each node limited to its own view) and "apply" (the volume in a slice view
and in 3-D). Jobs run as CLI subprocesses (`jobs.RunJob`, `mrml.segmenter.PredictionJob`); a timer on the server's
event loop polls them and mirrors their status into the page's state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from trame.app import get_server
from trame.ui.vuetify3 import SinglePageWithDrawerLayout
from trame.widgets import client, html
from trame.widgets import vuetify3 as v3
from trame_server.utils.asynchronous import create_task
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

from ..presets import PRESETS
from ..mrml import display as page_scene
from . import run_view
from .jobs import RunJob, RunRequest
from .security import (DEFAULT_MAX_UPLOAD_BYTES, IMAGE_SUFFIXES, UPLOADS, VOLUME_SUFFIXES, AccessError, ServedRoot,
                       check_upload)

logger = logging.getLogger(__name__)
DEVICES = ("auto", "cpu", "cuda", "mps")
PREVIEW_VIEWS = (("Reference", "reference"), ("Stage1", "stage-1 generator"), ("Aligned", "aligned generator"))
POLL_S = 0.3
NOT_CONFIGS = ("manifest.json", "model.json", "metrics.json", "splits.json")  # JSON files that are not run configs
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEVICE_NAME = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,2})?)$")


class AlignFlowPage:
    def __init__(self, server, served: ServedRoot, runs: str = "runs", device: str = "auto",
                 max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, encoder: str = "jpeg"):
        self.server, self.state, self.ctrl = server, server.state, server.controller
        self.served, self.device, self.max_upload_bytes = served, device, max_upload_bytes
        self.runs = served.resolve(runs)
        self.runs.mkdir(parents=True, exist_ok=True)
        self.job: RunJob | None = None
        self.prediction: Any = None
        self.preview_nodes: list = []
        self.apply_nodes: list = []
        self.segmentation = None

        self.slicer = SlicerApp()
        register_rca_factories(self.slicer.view_manager, server, rca_encoder=encoder)
        self.layouts = LayoutManager(self.slicer.scene, self.slicer.view_manager, server)
        preview = [ViewLayoutDefinition.axial_view(tag) for tag, _ in PREVIEW_VIEWS]
        self.layouts.register_layout("preview", Layout(LayoutDirection.Horizontal, preview))
        self.layouts.register_layout("apply", Layout(LayoutDirection.Horizontal, [
            ViewLayoutDefinition.axial_view("Volume"), ViewLayoutDefinition.threed_view(name="ThreeD")]))
        self.layouts.set_layout("preview")

        self._defaults()
        self.state.change("af_tab")(self._on_tab)
        self.state.change("af_run_name")(self._on_run_name)
        self.state.change("af_upload")(self._on_upload)
        self.state.change("af_show_masks")(self._on_show_masks)
        self.ctrl.on_server_ready.add(self._start_polling)
        self._build_ui()
        self.refresh_lists()
        self._on_run_name(self.state.af_run_name)

    # ---------------------------------------------------------------- state
    def _defaults(self) -> None:
        self.state.update({
            "trame__title": "AlignFlow",
            "af_tab": "run", "af_folders": [], "af_source": None, "af_references": None, "af_test": None,
            "af_configs": [], "af_config": None, "af_presets": list(PRESETS), "af_preset": "default",
            "af_devices": list(DEVICES), "af_device": self.device, "af_run_name": "run1", "af_run_exists": False,
            "af_phase": "idle", "af_stage": "", "af_step": 0, "af_total": 0, "af_percent": 0, "af_eta": "",
            "af_metrics": "", "af_message": "", "af_log": "", "af_error": "", "af_upload": None,
            "af_uploaded": "", "af_pair_index": 0, "af_pair_count": 0, "af_pair_label": "", "af_curve_svg": "",
            "af_report_html": "", "af_scores": [], "af_volumes": [], "af_volume": None, "af_models": [],
            "af_model": None, "af_show_masks": True, "af_apply_phase": "idle", "af_apply_message": "", "af_seg_ready": False,
        })

    def refresh_lists(self) -> None:
        """Folders, config files, volumes and exported models that the page can pick from the served root."""
        folders = self.served.folders()
        runs_rel = self.served.relative(self.runs)
        self.state.af_folders = [f for f in folders if not f.startswith(runs_rel + "/") and f != runs_rel]
        self.state.af_configs = [f for f in self.served.files((".json",), folders=folders)
                                 if not f.startswith(runs_rel + "/") and Path(f).name not in NOT_CONFIGS]
        volumes = self.served.files(VOLUME_SUFFIXES, folders=folders)
        dicom = [f for f in folders if _looks_like_dicom(self.served.resolve(f))]
        self.state.af_volumes = volumes + dicom
        self.state.af_models = [self.served.relative(path.parent) for path in sorted(self.runs.rglob("model.json"))]

    # ---------------------------------------------------------------- run
    def _run_folder(self) -> Path:
        name = str(self.state.af_run_name or "").strip()
        if not RUN_NAME.match(name):
            raise AccessError(f"{name!r}: a run name is letters, digits, '_', '-', '.' (at most 64)")
        return self.runs / name

    def _on_run_name(self, af_run_name=None, **_):
        try:
            folder = self._run_folder()
        except AccessError:
            self.state.af_run_exists = False
            return
        self.state.af_run_exists = (folder / "config.json").is_file()
        if self.state.af_run_exists:
            self._fill_inputs_from(folder)
        self.show_run(folder)

    def _fill_inputs_from(self, run: Path) -> None:
        """Show the folders an existing run was started with (Resume continues on those, whatever the page holds)."""
        inputs = _run_inputs(run)
        for field, key in (("af_source", "source"), ("af_references", "references"), ("af_test", "test")):
            if inputs.get(key):
                try:
                    self.state[field] = self.served.relative(Path(inputs[key]))
                except ValueError:  # a run started elsewhere, from folders outside the root
                    continue

    def _request(self, resume: bool) -> RunRequest:
        """What the page asks for, checked again here: a client can send any state, not only what the page offers."""
        device, preset = str(self.state.af_device), str(self.state.af_preset)
        if not DEVICE_NAME.match(device):
            raise AccessError(f"{device!r}: not a device (auto, cpu, cuda, cuda:N, mps)")
        if resume:
            return RunRequest(out=self._run_folder(), device=device)
        if preset not in PRESETS:
            raise AccessError(f"{preset!r}: not a preset ({', '.join(PRESETS)})")
        for field, what in (("af_source", "source pair folder"), ("af_references", "reference folder")):
            if not self.state[field]:
                raise AccessError(f"choose a {what}")
        config = self.served.resolve(self.state.af_config) if self.state.af_config else None
        test = self.served.resolve(self.state.af_test) if self.state.af_test else None
        return RunRequest(out=self._run_folder(), source=self.served.resolve(self.state.af_source),
                          references=self.served.resolve(self.state.af_references), preset=preset, device=device,
                          config=config, test=test)

    def start_run(self, resume: bool = False) -> None:
        self.state.af_error = ""
        if self.job is not None and self.job.running:
            self.state.af_error = "a run is already going; cancel it first"
            return
        try:
            request = self._request(resume)
            if not resume and (request.out / "config.json").is_file():
                raise AccessError(f"{request.out.name}: this run exists; Resume continues it")
        except (AccessError, ValueError) as error:  # ValueError: e.g. a NUL byte in a path
            self.state.af_error = str(error)
            return
        self.job = RunJob(request, resume=resume)
        self._mirror(self.job.status)

    def resume_run(self) -> None:
        self.start_run(resume=True)

    def cancel_run(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.state.af_message = "cancelling: the run stops at a consistent point"

    def _mirror(self, status: dict) -> None:
        total = status.get("total") or 0
        eta = status.get("eta_s")
        self.state.update({
            "af_phase": status["phase"], "af_stage": status.get("stage", ""), "af_step": status.get("step", 0),
            "af_total": total, "af_percent": 100.0 * status.get("step", 0) / total if total else 0,
            "af_eta": "" if eta is None else f"{float(eta):.0f} s",
            "af_metrics": "  ".join(f"{k} {v:.4g}" for k, v in sorted(status.get("metrics", {}).items())),
            "af_message": status.get("message", ""), "af_log": "\n".join(status.get("log", [])[-12:]),
        })

    # ---------------------------------------------------------------- upload
    def _on_upload(self, af_upload=None, **_):
        files = af_upload if isinstance(af_upload, list) else [af_upload] if af_upload else []
        if not files:
            return
        uploads = self.served.resolve(UPLOADS)
        number = 1
        while (uploads / f"references-{number}").exists():
            number += 1
        folder = uploads / f"references-{number}"
        saved = []
        try:
            checked: dict[str, bytes] = {}
            for file in files:
                name = check_upload(file.get("name", ""), _content(file), self.max_upload_bytes)
                stem, suffix = os.path.splitext(name)
                copy = 1
                while name in checked:  # two names that clean to the same one are both kept
                    copy += 1
                    name = f"{stem}-{copy}{suffix}"
                checked[name] = _content(file)
        except AccessError as error:
            self.state.af_error = str(error)
            self.state.af_upload = None
            return
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in checked.items():
            (folder / name).write_bytes(data)
            saved.append(name)
        self.refresh_lists()
        self.state.af_references = self.served.relative(folder)
        self.state.af_uploaded = f"{len(saved)} reference image(s) saved in {self.served.relative(folder)}"
        self.state.af_upload = None
        self.state.af_error = ""

    # ---------------------------------------------------------------- preview
    def show_run(self, run: Path) -> None:
        pairs = run_view.preview_pairs(run)
        self.state.af_pair_count = len(pairs)
        self.state.af_curve_svg = run_view.alignment_curve_svg(run)
        self.state.af_report_html = run_view.report_html(run)
        self.state.af_scores = run_view.metric_rows(run)
        self.state.af_pair_index = min(_as_int(self.state.af_pair_index), max(len(pairs) - 1, 0))
        self.show_pair(self.state.af_pair_index)

    def show_pair(self, index: int) -> None:
        scene = self.slicer.scene
        page_scene.remove_nodes(scene, self.preview_nodes)
        self.preview_nodes = []
        try:
            run = self._run_folder()
        except AccessError:
            return
        pairs = run_view.preview_pairs(run)
        if not pairs:
            self.state.af_pair_label = ""
            return
        index = _as_int(index) % len(pairs)
        self.state.af_pair_index = index
        references = []
        references_folder = _run_inputs(run).get("references")
        if references_folder:
            try:  # only what lies under the root is shown, even for a run started elsewhere
                references = run_view.reference_images(self.served.resolve(self.served.relative(
                    Path(references_folder))))
            except (ValueError, AccessError):
                references = []
        shown = {}
        if references:
            shown["Reference"] = page_scene.load_pair(scene, references[index % len(references)], None,
                                                      "reference", (1, 1, 1))
        shown["Stage1"] = page_scene.load_pair(scene, *pairs[index]["stage1"], "stage-1", page_scene.STAGE1_COLOUR)
        shown["Aligned"] = page_scene.load_pair(scene, *pairs[index]["aligned"], "aligned", page_scene.ALIGNED_COLOUR)
        for tag, nodes in shown.items():
            view = self.slicer.view_manager.get_view(tag)
            if view is None:
                continue
            for node in nodes:
                page_scene.show_in_view(node, view.get_view_node_id())
            view.set_background_volume_id(nodes[0].GetID())
            view.fit_view_to_content()
            view.schedule_render()
            self.preview_nodes += nodes
        page_scene.set_overlays_visible(self.preview_nodes, bool(self.state.af_show_masks))
        self.state.af_pair_label = f"pair {index + 1} of {len(pairs)}: {pairs[index]['aligned'][0].stem}"

    def _on_show_masks(self, af_show_masks=True, **_):
        page_scene.set_overlays_visible(self.preview_nodes + self.apply_nodes, bool(af_show_masks))
        for view in self.slicer.view_manager.get_views():
            view.schedule_render()

    def next_pair(self) -> None:
        self.show_pair(_as_int(self.state.af_pair_index) + 1)

    def previous_pair(self) -> None:
        self.show_pair(_as_int(self.state.af_pair_index) - 1)

    # ---------------------------------------------------------------- apply
    def _on_tab(self, af_tab=None, **_):
        self.layouts.set_layout("apply" if af_tab == "apply" else "preview")
        if af_tab == "run":
            self.show_pair(self.state.af_pair_index)

    def apply_segmenter(self) -> None:
        from ..mrml.segmenter import PredictionJob

        self.state.af_error = ""
        if self.prediction is not None and self.prediction.running:
            return
        try:
            if not self.state.af_volume or not self.state.af_model:
                raise AccessError("choose a volume and a trained segmenter")
            volume_path = self.served.resolve(self.state.af_volume)
            model = self.served.resolve(self.state.af_model)
            page_scene.remove_nodes(self.slicer.scene, self.apply_nodes)
            self.apply_nodes, self.segmentation = [], None
            volume = page_scene.load_server_volume(self.slicer.scene, volume_path)
        except (AccessError, OSError, ValueError) as error:
            self.state.af_error = str(error)
            return
        except RuntimeError as error:  # SimpleITK's reader on a file that is not an image
            self.state.af_error = f"{self.state.af_volume}: cannot be read as a volume ({str(error).splitlines()[0]})"
            return
        self.apply_nodes = [volume]
        self._show_apply_volume(volume)
        self.prediction = PredictionJob(self.slicer.scene, volume, model, str(self.state.af_device)).start()
        self.state.update({"af_apply_phase": "running", "af_apply_message": "segmenting…", "af_seg_ready": False})

    def _show_apply_volume(self, volume) -> None:
        slice_view = self.slicer.view_manager.get_view("Volume")
        if slice_view is not None:
            page_scene.show_in_view(volume, slice_view.get_view_node_id())
            slice_view.set_background_volume_id(volume.GetID())
            slice_view.fit_view_to_content()
            slice_view.schedule_render()

    def _finish_prediction(self) -> None:
        job, self.prediction = self.prediction, None
        try:
            if not job.succeeded:
                message = "cancelled" if job.cancelled else job.error_message or "the segmenter failed"
                self.state.update({"af_apply_phase": "failed", "af_apply_message": message})
                return
            volume = self.apply_nodes[0]
            mask = job.mask()
            self.segmentation = page_scene.segmentation_from_mask(self.slicer.scene, volume, mask)
            self.apply_nodes.append(self.segmentation)
            page_scene.show_in_view(self.segmentation, *(view.get_view_node_id() for view in (
                self.slicer.view_manager.get_view("Volume"), self.slicer.view_manager.get_view("ThreeD")) if view))
            for view in self.slicer.view_manager.get_views():
                view.reset_view()
                view.schedule_render()
            voxels = int(mask.sum())
            self.state.update({"af_apply_phase": "done", "af_seg_ready": True,
                               "af_apply_message": f"{voxels} voxels segmented in {volume.GetName()}"})
        except Exception as error:  # noqa: BLE001 - a bad result must not leave Apply disabled
            self.state.update({"af_apply_phase": "failed", "af_apply_message": f"the result could not be shown: {error}"})
            raise
        finally:
            job.cleanup()

    async def download_segmentation(self):
        if self.segmentation is None:
            return None
        return self.server.protocol.addAttachment(page_scene.segmentation_file_bytes(self.segmentation))

    # ---------------------------------------------------------------- polling
    def _start_polling(self, **_):
        create_task(self._poll_forever())

    def _refit_views_soon(self, **_):
        create_task(self._refit_views())

    async def _refit_views(self):
        """Views fitted before a browser gave them their size are zoomed wrongly; fit again once it has."""
        await asyncio.sleep(1.0)
        with self.state:
            for view in self.slicer.view_manager.get_views():
                view.reset_view()
                view.schedule_render()

    async def _poll_forever(self):
        while True:
            await asyncio.sleep(POLL_S)
            self.poll()

    def poll(self) -> None:
        with self.state:
            try:
                self._poll_jobs()
            except Exception as error:  # noqa: BLE001 - the page must keep polling whatever one update did
                logger.exception("while updating the page")
                self.state.af_error = f"the page could not be updated: {error}"

    def _poll_jobs(self) -> None:
        if self.job is not None and (self.job.running or self.state.af_phase == "running"):
            status = self.job.poll()
            self._mirror(status)
            if status["phase"] != "running":
                self.refresh_lists()
                self.state.af_run_name = self.job.request.out.name  # show what this job made
                self._on_run_name(self.state.af_run_name)
        if self.prediction is not None:
            self.prediction.poll()
            if self.prediction.finished:
                self._finish_prediction()

    # ---------------------------------------------------------------- UI
    def _build_ui(self) -> None:
        with SinglePageWithDrawerLayout(self.server) as layout:
            layout.title.set_text("AlignFlow")
            layout.drawer.width = 380
            with layout.toolbar:
                v3.VSpacer()
                v3.VSwitch(v_model=("af_show_masks",), label="masks", id="af-show-masks", density="compact",
                           hide_details=True, classes="mr-4 flex-grow-0", color="primary")
                html.Span("{{ af_phase }}", id="af-phase", classes="mr-4 text-body-2")
            with layout.drawer:
                with v3.VTabs(v_model=("af_tab",), density="compact", grow=True):
                    v3.VTab("Run & preview", value="run", id="af-tab-run")
                    v3.VTab("Apply segmenter", value="apply", id="af-tab-apply")
                v3.VAlert(v_if="af_error", text=("af_error",), type="error", density="compact", id="af-error",
                          classes="ma-2")
                with html.Div(v_show="af_tab === 'run'", classes="pa-2"):
                    self._run_panel()
                with html.Div(v_show="af_tab === 'apply'", classes="pa-2"):
                    self._apply_panel()
            with layout.content:
                client.ClientTriggers(mounted=self._refit_views_soon)
                with html.Div(style="display: flex; flex-direction: column; height: calc(100vh - 64px);"):
                    with html.Div(style="position: relative; flex: 1 1 60%; min-height: 300px;", id="af-views"):
                        self.layouts.initialize_layout_grid(layout)
                    with html.Div(v_show="af_tab === 'run'", style="flex: 0 0 auto; overflow: auto; max-height: 40%;",
                                  classes="pa-2"):
                        html.Div(v_html=("af_curve_svg",), id="af-curve")
                        with v3.VTable(v_if="af_scores.length", density="compact", id="af-scores"):
                            with html.Tbody():
                                with html.Tr(v_for="row in af_scores", key="row.model"):
                                    html.Td("{{ row.model }}")
                                    html.Td("mDice {{ row.mdice }}")
                                    html.Td("mIoU {{ row.miou }}")
                        html.Iframe(v_if="af_report_html", srcdoc=("af_report_html",), id="af-report",
                                    style="width: 100%; height: 400px; border: 1px solid #ccc;")

    def _run_panel(self) -> None:
        v3.VSelect(label="Source pairs (images/ + masks/)", v_model=("af_source",), items=("af_folders",),
                   id="af-source", density="compact")
        v3.VSelect(label="Target references", v_model=("af_references",), items=("af_folders",),
                   id="af-references", density="compact")
        v3.VFileInput(label="…or upload reference images", v_model=("af_upload",), multiple=True,
                      accept=",".join(IMAGE_SUFFIXES), id="af-upload", density="compact", show_size=True)
        html.Div("{{ af_uploaded }}", v_if="af_uploaded", id="af-uploaded", classes="text-caption mb-2")
        v3.VSelect(label="Labelled target test pairs (optional)", v_model=("af_test",), items=("af_folders",),
                   clearable=True, id="af-test", density="compact")
        with v3.VRow(dense=True):
            with v3.VCol():
                v3.VSelect(label="Preset", v_model=("af_preset",), items=("af_presets",), id="af-preset",
                           density="compact")
            with v3.VCol():
                v3.VSelect(label="Device", v_model=("af_device",), items=("af_devices",), id="af-device",
                           density="compact")
        v3.VSelect(label="Config file (optional)", v_model=("af_config",), items=("af_configs",), clearable=True,
                   id="af-config", density="compact")
        v3.VTextField(label="Run name", v_model=("af_run_name",), id="af-run-name", density="compact")
        with v3.VRow(dense=True, classes="mb-2"):
            v3.VBtn("Start", click=self.start_run, id="af-start", color="primary",
                    disabled=("af_phase === 'running' || af_run_exists",))
            v3.VBtn("Resume", click=self.resume_run, id="af-resume", classes="ml-2",
                    disabled=("af_phase === 'running' || !af_run_exists",))
            v3.VBtn("Cancel", click=self.cancel_run, id="af-cancel", classes="ml-2", color="error",
                    disabled=("af_phase !== 'running'",))
        v3.VProgressLinear(model_value=("af_percent",), height=8, id="af-progress")
        html.Div("{{ af_stage }} {{ af_step }}/{{ af_total }} {{ af_eta ? '· ETA ' + af_eta : '' }}",
                 id="af-stage", classes="text-body-2 mt-1")
        html.Div("{{ af_metrics }}", id="af-metrics", classes="text-caption")
        html.Div("{{ af_message }}", id="af-message", classes="text-body-2")
        html.Pre("{{ af_log }}", id="af-log", style="font-size: 10px; max-height: 120px; overflow: auto;")
        v3.VDivider(classes="my-2")
        html.Div("Preview: reference · stage-1 · aligned", classes="text-subtitle-2")
        with v3.VRow(dense=True, align="center"):
            v3.VBtn("Previous", click=self.previous_pair, id="af-previous", disabled=("!af_pair_count",))
            v3.VBtn("Next", click=self.next_pair, id="af-next", classes="ml-2", disabled=("!af_pair_count",))
        html.Div("{{ af_pair_label }}", id="af-pair-label", classes="text-caption mt-1")

    def _apply_panel(self) -> None:
        v3.VSelect(label="Volume on the server (NRRD, NIfTI, DICOM folder)", v_model=("af_volume",),
                   items=("af_volumes",), id="af-volume", density="compact")
        v3.VSelect(label="Trained segmenter", v_model=("af_model",), items=("af_models",), id="af-model",
                   density="compact")
        with v3.VRow(dense=True, classes="mb-2"):
            v3.VBtn("Apply", click=self.apply_segmenter, id="af-apply", color="primary",
                    disabled=("af_apply_phase === 'running'",))
            v3.VBtn("Download .seg.nrrd", id="af-download", classes="ml-2", disabled=("!af_seg_ready",),
                    click=("utils.download('segmentation.seg.nrrd', "
                           f"trigger('{self.ctrl.trigger_name(self.download_segmentation)}'), "
                           "'application/octet-stream')"))
        html.Div("{{ af_apply_message }}", id="af-apply-message", classes="text-body-2")
        v3.VBtn("Refresh lists", click=self.refresh_lists, variant="text", density="compact", classes="mt-2")


def _as_int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _run_inputs(run: Path) -> dict:
    """The folders a run was started with (its config.json "inputs"); empty for a run not started yet."""
    try:
        inputs = json.loads((Path(run) / "config.json").read_text()).get("inputs", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return inputs if isinstance(inputs, dict) else {}


def _content(file: dict) -> bytes:
    content = file.get("content", b"") if isinstance(file, dict) else b""
    if isinstance(content, str):  # some clients send text; images never are
        return content.encode("latin-1", errors="replace")
    return bytes(content or b"")


def _looks_like_dicom(folder: Path) -> bool:
    """A folder of DICOM files (the 'DICM' marker at byte 128 of the first file checked)."""
    try:
        for entry in sorted(folder.iterdir())[:5]:
            if entry.is_file():
                with entry.open("rb") as handle:
                    handle.seek(128)
                    if handle.read(4) == b"DICM":
                        return True
    except OSError:
        return False
    return False


def build_app(served: ServedRoot, runs: str = "runs", device: str = "auto",
              max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, encoder: str = "jpeg", server=None) -> AlignFlowPage:
    server = server or get_server(client_type="vue3")
    return AlignFlowPage(server, served, runs, device, max_upload_bytes, encoder)


def serve(served: ServedRoot, host: str, port: int, token: str, **options: Any) -> None:
    """Start the page and block until Ctrl-C. The token is wslink's websocket secret: without it the page loads but
    gets no state, runs nothing and downloads nothing."""
    page = build_app(served, **options)
    parser = page.server.cli
    parser.set_defaults(authKey=token)
    os.environ["TRAME_ARGS"] = ""  # trame would otherwise parse alignflow's own argv as its options
    # timeout=0: wslink would otherwise exit after 5 minutes without a browser, stopping a run started from the page
    page.server.start(host=host, port=port, open_browser=False, show_connection_info=False, timeout=0)
