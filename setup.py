"""
Install the ``mask2former`` package (``pip install --no-build-isolation -e .``).

This also builds the native multi-scale deformable attention op
(mask2former/modeling/pixel_decoder/ops/csrc): the C++ CPU kernel always, and the CUDA kernel when
a GPU and a CUDA toolkit are found, or when ``FORCE_CUDA=1`` (then set ``CUDA_HOME`` to the toolkit
and ``TORCH_CUDA_ARCH_LIST``, e.g. "9.0"). The op is optional: when it cannot be built (no
compiler, no torch at build time) the install still succeeds with a warning and mask2former runs
the PyTorch implementation. With ``FORCE_CUDA=1`` a failed build is an error.
"""
import glob
import os
import warnings

from setuptools import find_packages, setup

NATIVE_OP_NAME = "mask2former.modeling.pixel_decoder.ops._C"
NATIVE_OP_SOURCES = "mask2former/modeling/pixel_decoder/ops/csrc"


def native_op_build():
    """Returns (ext_modules, cmdclass) that build the native op, or empty ones without torch."""
    try:
        import torch
        from torch.utils.cpp_extension import (
            CUDA_HOME,
            BuildExtension,
            CppExtension,
            CUDAExtension,
        )
    except ImportError:
        warnings.warn("torch is not importable at build time: skipping the native MSDeformAttn "
                      "op (install torch first, then this package with --no-build-isolation).")
        return [], {}

    force_cuda = os.environ.get("FORCE_CUDA") == "1"
    with_cuda = force_cuda or (torch.cuda.is_available() and CUDA_HOME is not None)
    sources = sorted(glob.glob(os.path.join(NATIVE_OP_SOURCES, "*.cpp")))
    compile_args = {"cxx": ["-O3", "-fopenmp"]}
    if with_cuda:
        sources += sorted(glob.glob(os.path.join(NATIVE_OP_SOURCES, "*.cu")))
        compile_args["nvcc"] = ["-O3"]
        extension = CUDAExtension(
            NATIVE_OP_NAME, sources, define_macros=[("WITH_CUDA", None)],
            extra_compile_args=compile_args, extra_link_args=["-fopenmp"], optional=not force_cuda,
        )
    else:
        extension = CppExtension(
            NATIVE_OP_NAME, sources, extra_compile_args=compile_args,
            extra_link_args=["-fopenmp"], optional=True,
        )

    class OptionalBuildExtension(BuildExtension):
        """Builds the op; on failure warns and lets the install go on (unless FORCE_CUDA=1)."""

        def build_extensions(self):
            try:
                super().build_extensions()
            except Exception as error:  # any compiler or toolchain failure
                if force_cuda:
                    raise
                self.warn(f"building the native MSDeformAttn op failed ({error}); "
                          "mask2former will use the PyTorch implementation.")

    return [extension], {"build_ext": OptionalBuildExtension}


ext_modules, cmdclass = native_op_build()

setup(
    name="mask2former",
    version="0.1.0",
    description="Mask2Former (masked-attention mask transformer) as a Detectron2 project",
    packages=find_packages(
        include=("mask2former", "mask2former.*", "mask2former_video", "mask2former_video.*")
    ),
    python_requires=">=3.9",
    install_requires=[
        # Detectron2 is not on the package index: tools/install_detectron2.py installs it.
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy<2",  # panopticapi pins numpy<2 in its metadata
        "scipy",
        "fvcore>=0.1.5,<0.1.6",
        "iopath>=0.1.7,<0.1.10",
        "pycocotools>=2.0.2",
        "faster-coco-eval>=1.8",  # COCO AP in C++, pycocotools' numbers (evaluation/fast_cocoeval.py)
        "opencv-python-headless",
        "panopticapi-lite",
        "cityscapesscripts",
        "omegaconf>=2.1",
        "hydra-core>=1.1",
        "matplotlib",
        "tensorboard",
        "yacs",
        "tabulate",
        "termcolor",
        "cloudpickle",
        "tqdm",
        "Pillow",
        "shapely",  # Detectron2's Cityscapes instance loader
    ],
    # test: transformers + safetensors serve tests/test_convert_hf.py, which builds a transformers
    # Mask2Former (tools/convert-hf-to-d2.py itself needs only safetensors, for .safetensors);
    # nbclient + ipykernel execute notebooks/getting_started.ipynb (tests/test_notebook.py);
    # playwright drives the system's Chromium in the web app's browser tests (tests/test_app.py).
    extras_require={
        "test": ["pytest", "hypothesis", "transformers", "safetensors", "nbclient", "ipykernel",
                 "playwright"],
        # Export (tools/deploy/export_model.py) and ONNX Runtime inference (mask2former.deploy);
        # onnxscript serves the torch.export-based exporter (--onnx-exporter dynamo).
        "deploy": ["onnx>=1.16", "onnxruntime>=1.17", "onnxscript>=0.2"],
        # The web app (demo/app.py): Gradio and its HTTP client, and PyAV to write H.264 videos
        # that browsers play (OpenCV's wheels carry no H.264 encoder).
        "app": ["gradio>=5,<7", "gradio_client", "av>=12"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
