"""``python -m ncsn_pipeline.evaluation``: the same as ``ncsn-digits-eval``."""

import sys

from ..cli.digits_eval import main

sys.exit(main())
