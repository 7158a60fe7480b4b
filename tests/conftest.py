import os
import tempfile

# No model hub is reachable: fail fast instead of retrying for minutes.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LDM_LAB_PROFILE", "smoke")
# Figures and tables written by tests (and the notebooks they execute) go to a scratch folder, never over the
# committed figures/ and data/results/.
os.environ.setdefault("LDM_LAB_OUTPUT", tempfile.mkdtemp(prefix="ldm-lab-test-output-"))
