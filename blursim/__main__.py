"""``python -m blursim`` runs the command line."""

import sys

from blursim.cli.main import main

sys.exit(main())
