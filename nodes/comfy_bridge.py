"""Every ComfyUI import of the pack, behind small functions that also work without ComfyUI.

Inside ComfyUI these call ``folder_paths``, ``comfy.model_management``, ``comfy.model_patcher`` and
``comfy.utils``. Without it (tests, scripts) they fall back to: a folder registry stub (``models/`` in
the working directory, or ``$EMO_MODELS_DIR``), ``torch.device("cpu")``, a no-op progress bar, a
module-level interrupt flag with ComfyUI's semantics, the system temp folder and a file-backed VIDEO stand-in.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading

import torch

try:
    import comfy.model_management as _mm
    import comfy.model_patcher as _patcher
    import comfy.utils as _utils
    import folder_paths as _folder_paths
except ImportError:
    _mm = _patcher = _utils = _folder_paths = None

HAVE_COMFY = _folder_paths is not None
log = logging.getLogger("emo-comfy")

WEIGHT_EXTENSIONS = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
OUR_FOLDERS = ("emo", "animatediff_models", "audio_encoders", "face_analysis", "audio_separation")  # created when ComfyUI lacks them
STUB_FOLDERS = ("emo", "checkpoints", "diffusers", "vae", "animatediff_models", "audio_encoders", "face_analysis",
                "audio_separation")
# Folders whose files are not torch/safetensors weights: the face-analysis .onnx and MediaPipe .task files,
# the MDX-Net vocal separation .onnx files.
FOLDER_EXTENSIONS = {"face_analysis": {".onnx", ".task"}, "audio_separation": {".onnx"}}

# ---- model folders -------------------------------------------------------------------------------
_stub_folders: dict[str, list[str]] = {}


def _stub_models_dir() -> str:
    return os.environ.get("EMO_MODELS_DIR", os.path.join(os.getcwd(), "models"))


def register_model_folders() -> None:
    """Add ``models/emo``, ``models/animatediff_models``, ``models/face_analysis``, ``models/audio_separation``
    (and ``audio_encoders`` on old cores).

    A name ComfyUI already knows (core, or an extra_model_paths.yaml entry) keeps its folders first;
    ours is appended and weight extensions are added to its filter, never replacing the entry.
    """
    if not HAVE_COMFY:
        for name in STUB_FOLDERS:
            _stub_folders.setdefault(name, [os.path.join(_stub_models_dir(), name)])
        return
    table = _folder_paths.folder_names_and_paths
    for name in OUR_FOLDERS:
        default = os.path.join(_folder_paths.models_dir, name)
        ours = FOLDER_EXTENSIONS.get(name, WEIGHT_EXTENSIONS)
        if name in table:
            paths, extensions = table[name]
            if default not in paths:
                paths.append(default)
            table[name] = (paths, set(extensions) | ours)  # a new set: never mutate core's
        else:
            _folder_paths.add_model_folder_path(name, default)
            table[name] = (table[name][0], set(ours))


def add_model_folder(name: str, path: str) -> None:
    """Add one more folder for ``name`` (tests and scripts; ComfyUI users use extra_model_paths.yaml)."""
    if HAVE_COMFY:
        _folder_paths.add_model_folder_path(name, path)
    else:
        paths = _stub_folders.setdefault(name, [])
        if path not in paths:
            paths.insert(0, path)


def model_roots(name: str) -> list[str]:
    """The folders configured for a model kind (``emo``, ``vae``, ...), first match wins."""
    if HAVE_COMFY:
        try:
            return _folder_paths.get_folder_paths(name)
        except KeyError:
            return []
    register_model_folders()
    return list(_stub_folders.get(name, []))


def model_files(name: str) -> list[str]:
    """Weight files under a model kind's folders, as relative paths with '/' (ComfyUI's list)."""
    if HAVE_COMFY:
        try:
            return _folder_paths.get_filename_list(name)
        except KeyError:
            return []
    found = set()
    for root in model_roots(name):
        for folder, _dirs, files in os.walk(root, followlinks=True):
            for file in files:
                if os.path.splitext(file)[1].lower() in FOLDER_EXTENSIONS.get(name, WEIGHT_EXTENSIONS):
                    found.add(os.path.relpath(os.path.join(folder, file), root).replace(os.sep, "/"))
    return sorted(found)


def model_folders(name: str, marker: str | tuple[str, ...], depth: int = 3) -> list[str]:
    """Sub-folders (up to ``depth`` deep) of a model kind's folders that hold a ``marker`` file (a path
    relative to the folder, or any of several)."""
    markers = (marker,) if isinstance(marker, str) else tuple(marker)
    found = set()
    for root in model_roots(name):
        for folder, dirs, _files in os.walk(root, followlinks=True):
            rel = os.path.relpath(folder, root)
            if rel != "." and any(os.path.isfile(os.path.join(folder, m)) for m in markers):
                found.add(rel.replace(os.sep, "/"))
                dirs.clear()  # a model folder's own sub-folders are its parts
            elif rel.count(os.sep) + 1 >= depth:
                dirs.clear()
    return sorted(found)


# ---- devices, dtypes, model patchers -------------------------------------------------------------
def torch_device() -> torch.device:
    """Where models run: ComfyUI's torch device, else CPU."""
    return _mm.get_torch_device() if HAVE_COMFY else torch.device("cpu")


def offload_device() -> torch.device:
    """Where idle models wait: ComfyUI's UNet offload device, else CPU."""
    return _mm.unet_offload_device() if HAVE_COMFY else torch.device("cpu")


def intermediate_device() -> torch.device:
    """Where node outputs live between nodes (CPU unless --gpu-only)."""
    return _mm.intermediate_device() if HAVE_COMFY else torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """ComfyUI's UNet dtype for ``device`` (fp16/bf16 on GPUs, fp32 on CPU), limited to those three."""
    from emo_models.devices import DTYPES

    if not HAVE_COMFY:
        return torch.float32
    supported = [DTYPES["fp16"], DTYPES["bf16"], DTYPES["fp32"]]  # ComfyUI's order of preference
    dtype = _mm.unet_dtype(device, supported_dtypes=supported)
    return dtype if dtype in supported else torch.float16


class LocalPatcher:
    """Stand-in for ``comfy.model_patcher.ModelPatcher`` without ComfyUI: ``.model`` + devices."""

    def __init__(self, model: torch.nn.Module, load_device: torch.device, offload_device: torch.device):
        self.model, self.load_device, self.offload_device = model, load_device, offload_device


def model_patcher(module: torch.nn.Module):
    """Wrap a module so ComfyUI's memory manager can load it to the GPU and offload it again."""
    if HAVE_COMFY:
        return _patcher.ModelPatcher(module, load_device=torch_device(), offload_device=offload_device())
    return LocalPatcher(module, torch_device(), offload_device())


def load_models(patchers: list) -> None:
    """Bring the models onto their load device (ComfyUI evicts others as needed).

    Full loads only: the modules are plain torch modules without ComfyUI's low-VRAM weight casting,
    so a partial load would leave them split across devices.
    """
    if HAVE_COMFY:
        _mm.load_models_gpu(patchers, force_full_load=True)
    else:
        for patcher in patchers:
            patcher.model.to(patcher.load_device)


# ---- progress and cancel -------------------------------------------------------------------------
class _NoProgress:
    def update_absolute(self, value, total=None, preview=None) -> None:
        pass


def progress_bar(total: int):
    """ComfyUI's ProgressBar (UI progress + preview, and a cancel point), else a no-op."""
    return _utils.ProgressBar(total) if HAVE_COMFY else _NoProgress()


if HAVE_COMFY:
    InterruptProcessingException = _mm.InterruptProcessingException
else:

    class InterruptProcessingException(Exception):  # noqa: N818 (ComfyUI's name)
        """Raised when processing was cancelled (ComfyUI's exception outside ComfyUI)."""


_interrupt = threading.Event()


def interrupt_current_processing(value: bool = True) -> None:
    """Request (or clear) a cancel, as the UI's Cancel button does."""
    if HAVE_COMFY:
        _mm.interrupt_current_processing(value)
    elif value:
        _interrupt.set()
    else:
        _interrupt.clear()


def processing_interrupted() -> bool:
    """True once a cancel was requested (does not clear it)."""
    return _mm.processing_interrupted() if HAVE_COMFY else _interrupt.is_set()


def throw_exception_if_processing_interrupted() -> None:
    """Clear a requested cancel and raise InterruptProcessingException, so ComfyUI stops the prompt."""
    if HAVE_COMFY:
        _mm.throw_exception_if_processing_interrupted()
    elif _interrupt.is_set():
        _interrupt.clear()
        raise InterruptProcessingException()


# ---- files and videos ----------------------------------------------------------------------------
def temp_directory() -> str:
    """Where node-made files wait for a Save node: ComfyUI's temp folder (emptied at its start), else the
    system's temp folder's ``emo-comfy``."""
    folder = _folder_paths.get_temp_directory() if HAVE_COMFY else os.path.join(tempfile.gettempdir(), "emo-comfy")
    os.makedirs(folder, exist_ok=True)
    return folder


class FileVideo:
    """Stand-in for ComfyUI's ``VideoFromFile`` without ComfyUI: a video file on disk (the VIDEO it saves)."""

    def __init__(self, path: str):
        self.path = path

    def get_stream_source(self) -> str:
        return self.path

    def get_dimensions(self) -> tuple[int, int]:
        from emo_models.media import probe_video

        info = probe_video(self.path)
        return info["width"], info["height"]

    def save_to(self, path: str, *args, **kwargs) -> None:
        shutil.copyfile(self.path, path)


def video_from_file(path: str):
    """ComfyUI's file-backed VIDEO (``VideoFromFile``, what Save Video takes) of an mp4 on disk."""
    if not HAVE_COMFY:
        return FileVideo(path)
    try:
        from comfy_api.latest import InputImpl

        return InputImpl.VideoFromFile(path)
    except ImportError:  # cores before comfy_api.latest
        from comfy_api.input_impl import VideoFromFile

        return VideoFromFile(path)
