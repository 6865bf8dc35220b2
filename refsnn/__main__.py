"""``python -m refsnn``: the ``refsnn`` command (refsnn.cli)."""
import sys

from .cli import main

sys.exit(main())
