"""The web demo (``python app.py``): limits (`limits`), samplers (`samplers`), models (`models`), request pricing
(`cost`), the work of each tab (`images`, `inpainting`, `editing`, `playground`), the tabs themselves (`tab_images`,
`tab_inpainting`, `tab_editing`, `tab_playground`, from the shared `controls`), Gradio's internals in one place
(`gradio_internals`) and the composition (`ui`: `build_demo`, `launch_demo`; Gradio is imported only when they
run)."""

from .models import DemoModelError, DemoModels
from .ui import build_demo, launch_demo

__all__ = ["DemoModelError", "DemoModels", "build_demo", "launch_demo"]
