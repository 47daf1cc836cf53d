"""``python -m ann2snn`` runs the command-line interface."""

import sys

from ann2snn.cli.main import main

sys.exit(main())
