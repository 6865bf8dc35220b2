"""Hot loops as pure functions on ndarrays, each in two implementations:
``impl="numpy"`` (the literal specification) and ``impl="numba"`` (fast, tested against it).

conv    conv2d forward, backward-data, backward-weight
pool    max / average pooling forward and backward
neuron  the refined spiking neuron over T steps, forward and all gradients (Eq. 12-20)
        (spike: levels, emission, checks; neuron_grad: the backward pass)
neuron_seq  the neuron in sequential mode: a current per step, no squeeze (docs/method.md §14; Eq. 3-5)
quant   the weight quantizer, forward and gradients (Eq. 6, 18-19)
"""
import os

# numba's OpenMP workers spin while they wait by default; on a shared 2-core machine that
# made small parallel kernels 20x slower.  A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
