"""``python -m speechbrain_crossmamba`` runs the command line (see ``cli.py``)."""

import sys

from speechbrain_crossmamba.cli import main

sys.exit(main())
