"""`python -m digitlab.cli`."""

import sys

from digitlab.cli.app import main

sys.exit(main())
