"""Packaging for ncsn-pipeline (src layout)."""

from pathlib import Path

from setuptools import find_packages, setup

README = Path(__file__).parent / "README.md"

setup(
    name="ncsn-pipeline",
    version="0.1.0",
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
    install_requires=[
        "torch>=2.1",
        "diffusers>=0.30",
        "huggingface-hub>=0.24",
        "safetensors>=0.4",
        "numpy>=1.24",
        "Pillow>=9.0",
        "matplotlib>=3.7",
    ],
    extras_require={
        "train": ["accelerate>=0.30", "transformers>=4.40", "datasets>=2.18", "scikit-learn>=1.3", "tensorboard"],
        "demo": ["gradio>=4.44"],
        "dev": ["pytest>=7.4", "ruff>=0.4", "scipy>=1.10"],
    },
    entry_points={
        "console_scripts": [
            "ncsn-sample=ncsn_pipeline.cli_sample:main",
            "ncsn-train=ncsn_pipeline.train:main",
            "ncsn-digits-eval=ncsn_pipeline.digits_eval:main",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
