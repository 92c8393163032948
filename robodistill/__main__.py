"""``python -m robodistill`` runs the command line."""

import sys

from robodistill.cli import main

sys.exit(main())
