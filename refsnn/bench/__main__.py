"""``python -m refsnn.bench {conv,neuron,train} [options]``: the benchmarks (same as ``refsnn bench``)."""
import sys

from refsnn.cli import main

sys.exit(main(["bench"] + sys.argv[1:]))
