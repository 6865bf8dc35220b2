"""``python -m refsnn.golden write|check ...`` (the same as ``refsnn golden ...``)."""
import sys

from . import main

sys.exit(main())
