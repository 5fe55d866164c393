"""Publishing: the self-contained layout (`export`), Hub transfers (`transfer`) and model cards (`model_card`)."""

from ..errors import HubError
from .export import export_for_hub, load_exported_folder, save_standalone, standalone_source
from .model_card import render_model_card, write_model_card
from .transfer import UPLOAD_PATTERNS, download_pipeline, push_folder_to_hub

__all__ = [
    "HubError",
    "UPLOAD_PATTERNS",
    "download_pipeline",
    "export_for_hub",
    "load_exported_folder",
    "push_folder_to_hub",
    "render_model_card",
    "save_standalone",
    "standalone_source",
    "write_model_card",
]
