import os

import pytest
import torch

# No model hub is reachable: fail fast instead of retrying for minutes.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LDM_LAB_PROFILE", "smoke")
os.environ.setdefault("MPLBACKEND", "Agg")  # figures render headless
# The tests' models are tiny: one thread avoids OpenMP start-up and contention costs (10x on a busy 2-core box).
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")  # the same for the notebook kernels the tests start


@pytest.fixture(autouse=True, scope="session")
def scratch_outputs(tmp_path_factory):
    """Figures and tables written by tests (and the notebooks they execute) go to a scratch folder, never over
    the committed figures/ and data/results/."""
    os.environ["LDM_LAB_OUTPUT"] = str(tmp_path_factory.mktemp("outputs"))
    yield
    os.environ.pop("LDM_LAB_OUTPUT")


@pytest.fixture(scope="session")
def untrained_ldm8():
    """LDM-8 of the compression ablation, untrained (seed 0), in eval mode, its latent scale measured on the first
    4 validation images: the pipeline's shapes without a trained model. Tests share it: read it, do not change it."""
    # Imported here, not at the top: every test process loads this file, and most never build a model.
    from ldm_lab.compression import ablation_target, validation_batch
    from ldm_lab.tasks import get_target

    torch.manual_seed(0)
    model = get_target(ablation_target(8)).build_model().eval()
    model.set_latent_scale_from(validation_batch(4)["image"])
    return model
