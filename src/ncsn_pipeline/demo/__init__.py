"""The web demo (``python app.py``): limits (`limits`), samplers (`samplers`), models (`models`), the Images tab
(`images`), the 2-D playground (`playground`) and the Gradio wiring (`ui`, the only module that imports Gradio)."""

from .models import DemoModelError, DemoModels
from .ui import build_demo, launch_demo

__all__ = ["DemoModelError", "DemoModels", "build_demo", "launch_demo"]
