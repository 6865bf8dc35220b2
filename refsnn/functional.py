"""The functional interface: every differentiable op of refsnn, by name.

``import refsnn.functional as F`` then ``F.conv2d(x, w, stride=2, padding=1)``.
"""
from .ops import *  # noqa: F401,F403
from .ops import __all__  # noqa: F401
