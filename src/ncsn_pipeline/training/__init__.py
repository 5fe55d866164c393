"""Training score models with accelerate: the run's settings (`config`: `TrainingConfig`), the loop (`loop`:
`train`), checkpoints (`checkpoints`) and the training data built from `ncsn_pipeline.data` (`data`).

Train from Python in a few lines (``ncsn-train`` does the same from its flags):

>>> import tempfile
>>> from ncsn_pipeline.training import TrainingConfig, train
>>> folder = train(TrainingConfig(dataset_name="two-moons", max_train_steps=3, train_batch_size=16, num_samples=8,
...                               report_to="none", output_dir=tempfile.mkdtemp() + "/moons"))
>>> (folder / "model_index.json").is_file()
True
"""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # for type checkers and the API reference
    from .config import TrainingConfig
    from .loop import train

__all__ = ["TrainingConfig", "train"]
__getattr__, __dir__ = lazy_exports(__name__, {"TrainingConfig": "config", "train": "loop"})
