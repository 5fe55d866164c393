"""``python -m ncsn_pipeline.train`` / ``accelerate launch -m ncsn_pipeline.train``: the same as ``ncsn-train``.

The training code lives in `ncsn_pipeline.training`.
"""

import sys

from .cli.train import main

if __name__ == "__main__":
    sys.exit(main())
