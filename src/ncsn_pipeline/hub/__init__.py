"""Publishing: the self-contained layout (`export`), Hub transfers (`transfer`), model cards (`model_card`) and
the demo Space in front of a published model (`space`)."""

from ..errors import HubError
from .export import export_for_hub, load_exported_folder, save_standalone, standalone_source
from .model_card import render_model_card, write_model_card
from .space import push_demo_to_hub
from .transfer import UPLOAD_PATTERNS, download_pipeline, push_folder_to_hub

__all__ = [
    "HubError",
    "UPLOAD_PATTERNS",
    "download_pipeline",
    "export_for_hub",
    "load_exported_folder",
    "push_demo_to_hub",
    "push_folder_to_hub",
    "render_model_card",
    "save_standalone",
    "standalone_source",
    "write_model_card",
]
