"""The small evaluation models the project trains and ships under ``data/checkpoints/`` (fp16 safetensors,
checksummed in ``manifest.json``), because no Inception or OpenAI CLIP weights are available here:

* ``fmnist-classifier`` (:mod:`.classifier`): a small CNN, the FID feature space for Fashion-MNIST.
  Retrain: ``ldm-lab train-evaluator fmnist-classifier``.
* ``lab-clip`` (:mod:`.lab_clip`): a small CLIP (open_clip's model class and BPE tokenizer) trained on emoji +
  shapes captions: CLIP score and a second FID feature space.
  Retrain: ``ldm-lab train-evaluator lab-clip``.
"""

from ldm_lab.checkpoints import CheckpointError, ManifestEntry, load_checkpoint, read_manifest
from ldm_lab.evaluation_models.classifier import ClassifierConfig, FashionClassifier, load_classifier
from ldm_lab.evaluation_models.lab_clip import LabClipConfig, build_lab_clip, load_lab_clip, tokenize

__all__ = ["CheckpointError", "ClassifierConfig", "FashionClassifier", "LabClipConfig", "ManifestEntry",
           "build_lab_clip", "load_checkpoint", "load_classifier", "load_lab_clip", "read_manifest", "tokenize"]
