"""Loading a shipped lab model: the file ``ldm-lab ship`` wrote, checked against the manifest, built as its target;
and :func:`load_trained`, which takes a shipped model wherever a run directory is expected.

A shipped file holds what inference needs and nothing else: an autoencoder target ships its autoencoder (no
discriminator, no optimizer); a latent diffusion model ships everything but its first stage, which it loads from
that first stage's own shipped file (named in its manifest entry), so several models share one copy.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ldm_lab.checkpoints import CheckpointError, ManifestEntry, load_checkpoint, read_manifest, verified_file
from ldm_lab.device import resolve_device
from ldm_lab.nn.autoencoder import Autoencoder
from ldm_lab.paths import checkpoints_dir
from ldm_lab.tasks.runs import Run, load_run
from ldm_lab.tasks.targets import AutoencoderTarget, TrainTarget, get_target

FIRST_STAGE = "first_stage"  # the attribute of a latent model that holds its frozen autoencoder


def inference_weights(target: TrainTarget, model: nn.Module) -> dict[str, Tensor]:
    """The weights a shipped file holds: an autoencoder target's autoencoder; a diffusion model's weights
    without its first stage and without frozen pretrained parts (lab-clip's text tower), which have files of
    their own."""
    if isinstance(target, AutoencoderTarget):
        return model.autoencoder.state_dict()
    elsewhere = external_prefixes(model)
    return {key: value for key, value in model.state_dict().items() if not key.startswith(elsewhere)}


def external_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of a diffusion model's weights that come from other shipped files."""
    return (f"{FIRST_STAGE}.", *getattr(model, "pretrained_prefixes", ()))


def inference_model(target: TrainTarget) -> nn.Module:
    """The untrained module a shipped file is loaded into: ``Autoencoder`` or the target's diffusion model."""
    return Autoencoder(target.autoencoder) if isinstance(target, AutoencoderTarget) else target.build_model()


def shipped_entry(name: str, folder: Path | None = None) -> ManifestEntry:
    """The manifest entry of lab model ``name`` (an error if it is missing or an evaluation model)."""
    entry = read_manifest(folder).get(name)
    if entry is None:
        verified_file(name, folder)  # raises the error that lists what is shipped and says how to ship it
    if entry.teacher is not None:
        raise CheckpointError(f"{name!r} is a few-step student distilled from {entry.teacher!r}; load it with "
                              f"ldm_lab.distill.load_student({name!r}) and sample it with its own sampler.")
    if entry.target is None:
        raise CheckpointError(f"{name!r} is an evaluation model, not a lab model; load it with "
                              "ldm_lab.evaluation_models (load_classifier, load_lab_clip).")
    return entry


def _load_strict(model: nn.Module, state: dict[str, Tensor], name: str, entry: ManifestEntry) -> None:
    """Load ``state``; only a latent model's first stage and frozen pretrained parts may be missing (they come
    from their own files)."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # a shape mismatch
        missing, unexpected = [str(error).splitlines()[-1].strip()], []
    missing = [key for key in missing if not key.startswith(external_prefixes(model))]
    if missing or unexpected:
        raise CheckpointError(
            f"the shipped {name!r} does not fit target {entry.target}'s model as the code builds it now "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}): the architecture changed after it was trained. "
            f"Ship it again: `ldm-lab ship {name}`.")


def _load_first_stage(model: nn.Module, name: str, entry: ManifestEntry, folder: Path | None) -> None:
    """Copy the shipped first stage into ``model``, refusing one other than the model was trained on."""
    _, first_entry = verified_file(entry.first_stage, folder)
    if entry.first_stage_sha256 and first_entry.sha256 != entry.first_stage_sha256:
        raise CheckpointError(
            f"{name!r} was trained on another {entry.first_stage!r} than the one shipped now (its SHA-256 "
            f"changed), so its latents would decode to noise. Ship both again: `ldm-lab ship {entry.first_stage} "
            f"{name}`, or restore the old first stage (git checkout data/checkpoints).")
    getattr(model, FIRST_STAGE).load_state_dict(load_shipped(entry.first_stage, "cpu", folder).state_dict())


def load_shipped(name: str, device: str | torch.device | None = None, folder: Path | None = None) -> nn.Module:
    """Shipped lab model ``name`` (a TARGETS name) in eval mode on ``device`` (default: cuda, mps, then cpu):
    an ``Autoencoder`` for a first stage, the target's ``LatentDiffusion`` for a diffusion model.

    The file's SHA-256 is checked against ``data/checkpoints/manifest.json`` (``folder``: another checkpoints
    folder); a missing or changed file is an error that says how to get it (``ldm-lab ship NAME``)."""
    shipped_entry(name, folder)  # a lab model, not an evaluation model
    state, entry = load_checkpoint(name, folder)  # checks the SHA-256
    model = inference_model(get_target(entry.target))
    _load_strict(model, state, name, entry)
    if entry.first_stage:
        _load_first_stage(model, name, entry, folder)
    if hasattr(model, "load_pretrained"):
        model.load_pretrained()  # lab-clip's frozen text tower, from lab_clip.safetensors
    return model.to(resolve_device(device)).eval()


def is_shipped_name(reference: str | Path, folder: Path | None = None) -> bool:
    """Whether ``reference`` names a shipped lab model rather than a run directory."""
    return not Path(reference).is_dir() and str(reference) in read_manifest(folder)


def shipped_run(name: str, device: str | torch.device = "cpu", folder: Path | None = None) -> Run:
    """A shipped lab model as a :class:`~ldm_lab.tasks.runs.Run` whose model is its target's (a shipped
    autoencoder comes inside an ``AutoencoderGAN`` whose discriminator is untrained: discriminators are not
    shipped)."""
    entry = shipped_entry(name, folder)
    target, model = get_target(entry.target), load_shipped(name, device, folder)
    if isinstance(target, AutoencoderTarget):
        autoencoder, model = model, target.build_model().to(device)
        model.autoencoder = autoencoder
    return Run((folder or checkpoints_dir()) / entry.file, target, model.eval(), entry.steps or 0, ema=True)


def load_trained(reference: str | Path, device: str | torch.device = "cpu", *, ema: bool = True) -> Run:
    """A trained model from a run directory (:func:`~ldm_lab.tasks.runs.load_run`, ``ema`` as there), the name of
    a shipped lab model, or a shipped ``.safetensors`` file listed in its folder's manifest (shipped weights are
    the EMA's). The ``ldm-lab`` commands load ``RUN_DIR``, ``--first-stage`` and ``--init-from`` with it."""
    path = Path(reference)
    if path.suffix == ".safetensors" and not path.is_dir():
        names = [name for name, entry in read_manifest(path.parent).items() if entry.file == path.name]
        if not names:
            raise FileNotFoundError(f"{path} is not listed in {path.parent / 'manifest.json'}; pass a run "
                                    "directory, a shipped model's name, or a file `ldm-lab ship` wrote.")
        return shipped_run(names[0], device, path.parent)
    if is_shipped_name(reference):
        return shipped_run(str(reference), device)
    return load_run(reference, device, ema=ema)
