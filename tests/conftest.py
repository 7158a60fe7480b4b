import os

import pytest

# No model hub is reachable: fail fast instead of retrying for minutes.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LDM_LAB_PROFILE", "smoke")


@pytest.fixture(autouse=True, scope="session")
def scratch_outputs(tmp_path_factory):
    """Figures and tables written by tests (and the notebooks they execute) go to a scratch folder, never over
    the committed figures/ and data/results/."""
    os.environ["LDM_LAB_OUTPUT"] = str(tmp_path_factory.mktemp("outputs"))
    yield
    os.environ.pop("LDM_LAB_OUTPUT")
