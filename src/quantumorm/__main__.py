"""``python -m quantumorm``: the ``quantumorm`` command (see :mod:`quantumorm.tools.cli`)."""

import sys

from .tools.cli import main

sys.exit(main())
