"""``python -m ncsn_pipeline.evaluation``: the same as ``ncsn-digits-eval``."""

import sys

from .cli import main

sys.exit(main())
