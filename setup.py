"""Install the ``mask2former`` package (``pip install --no-build-isolation -e .``)."""
from setuptools import find_packages, setup

setup(
    name="mask2former",
    version="0.1.0",
    description="Mask2Former (masked-attention mask transformer) as a Detectron2 project",
    packages=find_packages(include=("mask2former", "mask2former.*")),
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
    ],
    extras_require={"test": ["pytest", "hypothesis"]},
)
