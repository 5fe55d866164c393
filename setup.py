"""Packaging for ncsn-pipeline (src layout)."""

import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

README = Path(__file__).parent / "README.md"
TRAIN_REQUIRES = ["accelerate>=0.30", "transformers>=4.40", "datasets>=2.18", "scikit-learn>=1.3", "tensorboard"]
# The demo's Inpainting tab draws held-out digits from scikit-learn's data set; accelerate lets diffusers load the
# bundled models without its "low cpu memory usage" warning. The README's first command installs only this extra.
# Standard FID / KID in ncsn-eval --fid (torchmetrics' estimators; no torchvision needed).
FID_REQUIRES = ["torchmetrics>=1.3"]
DEMO_REQUIRES = ["gradio>=6.31,<7", "scikit-learn>=1.3", "accelerate>=0.30"]
# The documentation site (mkdocs.yml): `mkdocs build --strict`, the API reference rendered from the docstrings.
DOCS_REQUIRES = ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"]


class BuildPyWithCards(build_py):
    """Also install the model-card templates of ``hub_cards/`` inside the package (``ncsn_pipeline/hub_cards``)."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "ncsn_pipeline" / "hub_cards"
        target.mkdir(parents=True, exist_ok=True)
        for template in (Path(__file__).parent / "hub_cards").glob("*.md"):
            shutil.copy(template, target / template.name)

setup(
    name="ncsn-pipeline",
    version="0.2.0",
    description=(
        "Score-based generative models (NCSN, annealed Langevin dynamics) as diffusers "
        "schedulers, models and pipelines."
    ),
    long_description=README.read_text(encoding="utf-8") if README.exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    package_dir={"": "src"},
    packages=find_packages("src"),
    include_package_data=True,
    package_data={
        "ncsn_pipeline": [
            "pretrained/*/*.json",
            "pretrained/*/*.md",
            "pretrained/*/*.png",
            "pretrained/*/*.gz",
            "pretrained/*/*/*.json",
            "pretrained/*/*.safetensors",
            "pretrained/*/*/*.safetensors",
            "pretrained/*/guide/*/*.json",  # a bundled model's guide for autoguidance (a pipeline folder)
            "pretrained/*/guide/*/*.safetensors",
        ]
    },
    install_requires=[
        "torch>=2.1",
        "diffusers>=0.30",
        "huggingface-hub>=0.24",
        "safetensors>=0.4",
        "numpy>=1.24",
        "Pillow>=9.0",
        "matplotlib>=3.7",
        "PyYAML>=6.0",  # the original NCSN / NCSNv2 configs (ncsn-convert)
        "torchdiffeq>=0.2.3",  # the adaptive ODE solver of the likelihood (ncsn_pipeline.likelihood)
    ],
    extras_require={
        "train": TRAIN_REQUIRES,
        "demo": DEMO_REQUIRES,
        "fid": FID_REQUIRES,
        "docs": DOCS_REQUIRES,
        "dev": TRAIN_REQUIRES + DEMO_REQUIRES + FID_REQUIRES + DOCS_REQUIRES
        + ["pytest>=7.4", "ruff>=0.4", "playwright>=1.40"],
    },
    cmdclass={"build_py": BuildPyWithCards},
    entry_points={
        "console_scripts": [
            "ncsn-sample=ncsn_pipeline.cli.sample:main",
            "ncsn-train=ncsn_pipeline.cli.train:main",
            "ncsn-train-classifier=ncsn_pipeline.cli.train_classifier:main",
            "ncsn-digits-eval=ncsn_pipeline.cli.digits_eval:main",
            "ncsn-eval=ncsn_pipeline.cli.evaluate:main",
            "ncsn-push=ncsn_pipeline.cli.push:main",
            "ncsn-export=ncsn_pipeline.cli.export:main",
            "ncsn-convert=ncsn_pipeline.cli.convert:main",
            "ncsn-tune-steps=ncsn_pipeline.cli.tune_steps:main",
            "ncsn-reconstruct-ema=ncsn_pipeline.cli.reconstruct_ema:main",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
