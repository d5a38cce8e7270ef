"""``python -m medallion_nb`` is the same as ``medallion-nb``."""

import sys

from medallion_nb.cli import main

sys.exit(main())
