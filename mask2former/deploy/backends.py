"""
The two runtimes of exported models, behind one call: (B, 3, H, W) float32 images in,
(class_logits (B, Q, K + 1), mask_logits (B, Q, H, W)) float32 numpy arrays out.

- ONNX (``model.onnx``): ONNX Runtime, with numpy alone beside it.
- TorchScript (``model.ts``): ``torch.jit.load``; needs torch, not Detectron2 or this package's
  native op.

Each also returns the deploy info JSON stored in the model file.
"""
import os
import zipfile

from .deploy_info import DEPLOY_INFO_KEY

__all__ = ["open_backend", "OnnxRuntimeBackend", "TorchScriptBackend", "torchscript_extra_files"]

_TORCHSCRIPT_INFO_FILE = DEPLOY_INFO_KEY + ".json"


class OnnxRuntimeBackend:
    """An ONNX model in an ONNX Runtime session (CPU unless ``providers`` say otherwise)."""

    format = "onnx"

    def __init__(self, path, num_threads=None, providers=None):
        """
        Args:
            path: the .onnx file.
            num_threads: intra-op threads of the session (None: ONNX Runtime's default, one per
                core).
            providers: ONNX Runtime execution providers (None: ["CPUExecutionProvider"]).
        """
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError(
                f"Running {path} needs onnxruntime: `pip install onnxruntime` (or this package "
                "with its deploy extra, `pip install -e \".[deploy]\"`)"
            ) from error
        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.session = onnxruntime.InferenceSession(
            path, options, providers=providers or ["CPUExecutionProvider"]
        )
        self.info_json = self.session.get_modelmeta().custom_metadata_map.get(DEPLOY_INFO_KEY)
        self.class_logits_shape = self.session.get_outputs()[0].shape
        # Give the arena's memory back after each run: the post-processing that follows (a
        # large photo's masks) then has it, instead of the process holding both at once.
        self._run_options = onnxruntime.RunOptions()
        self._run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def __call__(self, images):
        return tuple(self.session.run(None, {self.session.get_inputs()[0].name: images},
                                      self._run_options))


class TorchScriptBackend:
    """A traced TorchScript model (``torch.jit.load``), run without gradients."""

    format = "torchscript"

    def __init__(self, path):
        try:
            import torch
        except ImportError as error:
            raise ImportError(
                f"{path} is a TorchScript model, which needs torch; export with --format onnx "
                "to run with onnxruntime alone"
            ) from error
        self._torch = torch
        extra_files = {_TORCHSCRIPT_INFO_FILE: ""}
        self.module = torch.jit.load(path, _extra_files=extra_files).eval()
        self.info_json = extra_files[_TORCHSCRIPT_INFO_FILE] or None
        self.class_logits_shape = None

    def __call__(self, images):
        torch = self._torch
        # Without the profiling executor's optimizations: they recompile the graph at the second
        # call of every new input size (about 10 s for an R50 model on 2 cores), and later
        # calls were not faster with them.
        with torch.no_grad(), torch.jit.optimized_execution(False):
            class_logits, mask_logits = self.module(torch.from_numpy(images))
        return class_logits.cpu().numpy(), mask_logits.cpu().numpy()


def open_backend(path, num_threads=None, providers=None):
    """
    The backend for the model file at ``path``: TorchScript for a TorchScript archive (a zip
    file), else ONNX.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Exported model {path} does not exist")
    if zipfile.is_zipfile(path):
        return TorchScriptBackend(path)
    return OnnxRuntimeBackend(path, num_threads=num_threads, providers=providers)


def torchscript_extra_files(info_json):
    """The ``_extra_files`` argument of ``torch.jit.save`` that stores the deploy info."""
    return {_TORCHSCRIPT_INFO_FILE: info_json}
