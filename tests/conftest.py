"""Every test starts from ``refsnn.manual_seed(0)``, so a layer built without ``rng`` gets the same weights
whatever tests ran before it (the global generator is shared by the whole session)."""
import pytest

import refsnn


@pytest.fixture(autouse=True)
def _seed_global_generator():
    refsnn.manual_seed(0)
    yield

