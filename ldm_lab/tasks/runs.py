"""Run directories of ``ldm-lab train``: start or resume a target's training, and load a trained run back.

    run_dir/
        run.json        which target, which first stage it started from (written by us)
        latent_cache.safetensors   cached-latents targets: the training items encoded, loaded again on resume
        config.json     train config and model config, metrics.jsonl, samples/, checkpoints/ (the trainer's)

A latent target starts from a trained first stage (a run of the target its ``first_stage`` names, or that target's
shipped checkpoint); its weights are copied into the model, so the run's checkpoints are self-contained and
sampling needs nothing else. The ``ldm-lab`` commands also take the name of a shipped lab model wherever a run
directory is expected: they load with :func:`ldm_lab.shipping.load_trained`, which this module's ``loader``
parameters accept. Training reads a materialised copy of its dataset when the data cache holds one
(:mod:`ldm_lab.data.materialise`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from ldm_lab.checkpoints import ManifestEntry, read_manifest
from ldm_lab.data import DATASETS, collate
from ldm_lab.data.materialise import training_dataset
from ldm_lab.json_files import read_json
from ldm_lab.paths import checkpoints_dir, runs_dir
from ldm_lab.profiles import current_profile
from ldm_lab.tasks.diffusion import DiffusionTask
from ldm_lab.tasks.distillation import DistillationTask, check_teacher, init_from_teacher
from ldm_lab.tasks.inpainting import INPUT_CONV, widened_input
from ldm_lab.tasks.latent_cache import CacheFile, cache_latents
from ldm_lab.tasks.targets import AutoencoderTarget, DiffusionTarget, TrainTarget, get_target
from ldm_lab.training import TrainConfig, TrainResult, latest_checkpoint, load_weights, train
from ldm_lab.training.checkpoint import EMA_FILE, STATE_JSON_FILE, run_dir_lock

RUN_FILE = "run.json"
LATENT_CACHE_FILE = "latent_cache.safetensors"  # cached-latents targets: the encoded items
SHARED_LATENTS = ".latents"  # the runs folder's folder where runs share latent caches (by what they were made from)


@dataclass(frozen=True)
class Run:
    """A trained run loaded back: its target and its model (EMA weights when the run kept them), in eval mode."""

    run_dir: Path
    target: TrainTarget
    model: nn.Module
    step: int
    ema: bool          # the weights are the EMA's (else the raw ones)


def read_run_record(run_dir: str | Path) -> dict:
    """``run.json`` of a run, or an error saying what a run directory is."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir} is not an ldm-lab run directory (it has no {RUN_FILE}). Pass the --out folder of an "
            "`ldm-lab train` run, e.g. `ldm-lab train lab-class --out runs/lab-class` makes runs/lab-class, or the "
            f"name of a shipped model ({', '.join(read_manifest()) or 'none shipped yet'}) to an ldm-lab command "
            "(in Python: ldm_lab.shipping.load_trained).")
    return read_json(path, "Restore it from a copy, or train again into a new --out folder.")


def load_run(run_dir: str | Path, device: str | torch.device = "cpu", *, ema: bool = True) -> Run:
    """The newest checkpoint of a run, built as its target's model on ``device``: its EMA weights when the run
    kept them and ``ema`` is true (early in a run the EMA still lags far behind: pass ``ema=False``). Shipped
    models as well: :func:`ldm_lab.shipping.load_trained`."""
    run_dir = Path(run_dir)
    target = get_target(read_run_record(run_dir)["target"])
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint yet: let `ldm-lab train ... --out {run_dir}` run "
                                "at least until its first checkpoint (an interrupted run writes one as it stops).")
    model = target.build_model().to(device)
    ema = ema and (checkpoint / EMA_FILE).exists()
    load_weights(model, checkpoint, ema=ema)
    return Run(run_dir, target, model.eval(), int(checkpoint.name.removeprefix("step_")), ema)


class RunLoader(Protocol):
    """Loads a trained model from a reference: :func:`load_run` (run directories), or
    :func:`ldm_lab.shipping.load_trained` (also a shipped model's name or file)."""

    def __call__(self, reference: str | Path, device: str | torch.device = "cpu", *, ema: bool = True) -> Run: ...


def load_first_stage(model: nn.Module, target: DiffusionTarget, first_stage: str | Path,
                     loader: RunLoader = load_run) -> None:
    """Copy a trained autoencoder of ``target.first_stage`` into a latent model's frozen first stage, from what
    ``loader`` loads ``first_stage`` as (a run directory; with ``load_trained``, also a shipped model)."""
    run = loader(first_stage)
    if not isinstance(run.target, AutoencoderTarget):
        raise ValueError(f"{first_stage} trained {run.target.name}, not a first stage; pass a "
                         f"{target.first_stage} run as the first stage.")
    if run.model.autoencoder.config != model.first_stage.config:
        raise ValueError(f"the autoencoder of {first_stage} has another architecture than "
                         f"{model.preset.name}'s first stage; train one with `ldm-lab train {target.first_stage}`.")
    model.first_stage.load_state_dict(run.model.autoencoder.state_dict())


def run_config(target: TrainTarget, *, steps: int | None = None, batch_size: int | None = None,
               device: str | None = None, time_limit_s: float | None = None) -> TrainConfig:
    """The target's training defaults with the command line's overrides (steps default to the profile's)."""
    for option, value in (("steps", steps), ("batch_size", batch_size), ("time_limit_s", time_limit_s)):
        if value is not None and not value > 0:  # "not >": NaN is refused too
            raise ValueError(f"{option} must be > 0, not {value}; leave it out (None) for the target's default")
    steps = target.steps[current_profile()] if steps is None else steps
    overrides = {"steps": steps, "device": device, "time_limit_s": time_limit_s}
    if batch_size is not None:
        overrides["batch_size"] = batch_size
    return replace(target.train, **overrides)


@dataclass(frozen=True)
class RunStart:
    """How a fresh run starts besides its target's defaults (recorded in run.json, so a resume does the same)."""

    first_stage: str | Path | None = None  # latent targets: the trained first stage to encode and decode with
    init_from: str | Path | None = None    # start from the weights of another run of the same target (fine-tuning)
    freeze_encoder: bool = False           # first stages: train the decoder only, keeping the latent space
    teacher: str | Path | None = None      # distilled targets: the trained teacher (a run or shipped model);
                                           # None: the shipped model of the target's teacher


@dataclass(frozen=True)
class Teacher:
    """A distilled target's teacher: the reference it was loaded from, and the loaded run."""

    reference: str | Path
    run: Run


def _start(run_dir: Path, target: TrainTarget, model: nn.Module, start: RunStart,
           loader: RunLoader = load_run, teacher: Teacher | None = None) -> None:
    """Fresh run: load the weights to start from (a source's, or a teacher's cut to the student's widths), check
    and load the first stage (a run without one keeps the first stage its source or teacher was trained on), write
    run.json (with the lineage of those weights)."""
    starts_from = target.starts_from
    if starts_from is not None and start.init_from is None:
        raise ValueError(f"{target.name} is fine-tuned from a trained {starts_from}: train that first, "
                         f"`ldm-lab train {starts_from} --out runs/{starts_from}`, then pass --init-from "
                         f"runs/{starts_from} (or --init-from {target.name} to go on from the shipped model).")
    source = _initial_run(target, start.init_from, loader) if start.init_from is not None else None
    origin = start.init_from if source is not None else teacher.reference if teacher is not None else None
    first_stage = start.first_stage
    needs = target.needs_first_stage
    if needs and first_stage is None and origin is not None:
        first_stage = source_first_stage(origin, target)
        print(f"{target.name}: {origin} was trained on the first stage {first_stage}; training on it too (pass "
              "--first-stage to choose another)", flush=True)
    if needs and first_stage is None:
        raise ValueError(
            f"{target.name} trains in the latent space of a first stage, and none was given. Train one first, "
            f"`ldm-lab train {target.first_stage} --out runs/{target.first_stage}`, then pass "
            f"--first-stage runs/{target.first_stage}.")
    if first_stage is not None and not needs:
        raise ValueError(f"{target.name} has no first stage (it works in pixel space); drop --first-stage.")
    if source is not None and target.freeze_encoder:
        model.adopt_encoder(source.model)  # a new decoder behind the source's encoder
    elif source is not None:  # before the first stage: a --first-stage given as well replaces the source's
        state = source.model.state_dict()
        if INPUT_CONV in state and state[INPUT_CONV].shape != model.state_dict()[INPUT_CONV].shape:
            state = widened_input(state, model)  # an inpainting model from its text model
        model.load_state_dict(state)
    if teacher is not None and source is None:  # a student fine-tuned from a source keeps the source's weights
        cut = init_from_teacher(model, teacher.run.model)
        print(f"{target.name}: started from {teacher.reference}'s weights, {len(cut)} tensors cut to its widths",
              flush=True)
    if first_stage is not None:
        load_first_stage(model, target, first_stage, loader)
    model.load_pretrained()  # frozen pretrained parts (lab-clip's text tower); a resumed run has them already
    if teacher is not None:
        check_teacher(model, teacher.run.model)
    run_dir.mkdir(parents=True, exist_ok=True)
    # The lineage is recorded now: a source that trains on, or is shipped again, later changes nothing about this run.
    lineage = lineage_of(origin) if origin is not None else None
    if lineage is not None and teacher is not None and source is None:
        lineage = replace(lineage, description=f"distilled from {lineage.description}")
    record = {"target": target.name, "first_stage": str(first_stage) if first_stage is not None else None,
              "init_from": str(start.init_from) if start.init_from is not None else None,
              "lineage": dataclasses.asdict(lineage) if lineage is not None else None,
              "freeze_encoder": start.freeze_encoder or target.freeze_encoder,
              "teacher": str(teacher.reference) if teacher is not None else None}
    (run_dir / RUN_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")


def _initial_run(target: TrainTarget, init_from: str | Path, loader: RunLoader) -> Run:
    """Another run of ``target``, or of the target it ``starts_from`` (or, with ``load_trained``, a shipped model of
    either), with its newest raw weights, to fine-tune from."""
    source = loader(init_from, ema=False)
    allowed = (target.name, *([target.starts_from] if target.starts_from else []))
    if source.target.name not in allowed:
        raise ValueError(f"{init_from} trained {source.target.name}, not {' or '.join(allowed)}: --init-from takes "
                         "a run of the target being trained (same architecture), or of the target it is "
                         "fine-tuned from.")
    return source


def _shipped_source(reference: str | Path) -> tuple[str, ManifestEntry, Path] | None:
    """(name, manifest entry, checkpoints folder) of a shipped model given by name (in the default folder) or by
    file; None for a run directory or anything else."""
    path = Path(reference)
    if path.is_dir():
        return None
    folder = path.parent if path.suffix == ".safetensors" else checkpoints_dir()
    found = [(name, entry) for name, entry in read_manifest(folder).items()
             if (entry.file == path.name if path.suffix == ".safetensors" else name == str(reference))]
    return (*found[0], folder) if found else None


def source_first_stage(init_from: str | Path, target: TrainTarget) -> str:
    """The first stage the run or shipped model ``init_from`` was trained on, as a reference ``load_trained``
    takes: a run's recorded ``first_stage``; a shipped model's manifest entry's (by name in the default checkpoints
    folder, else by file); else the target's own first stage (its shipped model)."""
    if (Path(init_from) / RUN_FILE).is_file() and (recorded := read_run_record(init_from)["first_stage"]):
        return recorded
    shipped = _shipped_source(init_from)
    if shipped is not None and shipped[1].first_stage in (manifest := read_manifest(shipped[2])):
        name, folder = shipped[1].first_stage, shipped[2]
        return name if folder.resolve() == checkpoints_dir().resolve() else str(folder / manifest[name].file)
    return target.first_stage


@dataclass(frozen=True)
class Lineage:
    """The training behind the weights a fine-tuning run starts from (``--init-from``), its sources' included."""

    source: str              # the --init-from reference: a run directory, or a shipped model's name or file
    steps: int               # optimizer steps behind those weights
    training_seconds: float  # wall seconds of training behind them
    description: str         # "lab-emoji (shipped: 7,000 steps, 4,622 s)" or "lab-sdxl-size (run lab-sdxl-size:
                             # 3,000 steps, 2,244 s)", and what that was fine-tuned from


def lineage_of(reference: str | Path) -> Lineage:
    """The training behind ``reference``'s newest weights: a run directory's newest checkpoint (its step and
    elapsed seconds, plus the lineage it was itself started from), or a shipped model's manifest entry (whose
    steps and seconds already count its lineage)."""
    shipped = _shipped_source(reference)
    if shipped is not None:
        name, entry, _ = shipped
        inner = f", itself fine-tuned from {entry.fine_tuned_from}" if entry.fine_tuned_from else ""
        return Lineage(str(reference), entry.steps or 0, entry.training_seconds,
                       f"{name} (shipped: {entry.steps or 0:,} steps, {entry.training_seconds:,.0f} s){inner}")
    checkpoint = latest_checkpoint(reference) if Path(reference).is_dir() else None
    if checkpoint is None:
        raise FileNotFoundError(f"{reference} is neither a shipped model nor a run directory with a checkpoint: "
                                "--init-from takes one of those.")
    step = int(checkpoint.name.removeprefix("step_"))
    seconds = read_json(checkpoint / STATE_JSON_FILE, "Pass another --init-from run.")["elapsed_s"]
    # named by target and folder name, not the folder's path: a manifest entry must not record this machine's paths
    own = f"{read_run_record(reference)['target']} (run {Path(reference).name}: {step:,} steps, {seconds:,.0f} s)"
    inner = run_lineage(reference)
    if inner is None:
        return Lineage(str(reference), step, seconds, own)
    return Lineage(str(reference), step + inner.steps, seconds + inner.training_seconds,
                   f"{own}, itself fine-tuned from {inner.description}")


def run_lineage(run_dir: str | Path) -> Lineage | None:
    """What a run was fine-tuned from (None: it started from scratch): recorded in run.json when it started, or
    for a run started before runs recorded it, measured from its ``init_from`` now."""
    record = read_run_record(run_dir)
    if record.get("lineage"):
        return Lineage(**record["lineage"])
    return lineage_of(record["init_from"]) if record.get("init_from") else None


def _apply_freezing(model: nn.Module, target: TrainTarget, run_dir: Path) -> None:
    if target.freeze_encoder or read_run_record(run_dir).get("freeze_encoder"):
        if not isinstance(target, AutoencoderTarget):
            raise ValueError(f"--freeze-encoder fine-tunes a first stage's decoder; {target.name} is not a first "
                             "stage.")
        model.freeze_encoder()


def train_target(name: str | TrainTarget, run_dir: str | Path, config: TrainConfig, *, resume: bool = False,
                 first_stage: str | Path | None = None, init_from: str | Path | None = None,
                 freeze_encoder: bool = False, teacher: str | Path | None = None,
                 loader: RunLoader = load_run) -> TrainResult:
    """Train target ``name`` (or a target itself, e.g. a registered one changed with ``dataclasses.replace``, as
    the recipe ablation's variants; ``load_run`` cannot rebuild those by name) into ``run_dir`` (``resume``:
    continue its newest checkpoint); ``loader`` loads the
    ``first_stage``, ``init_from`` and ``teacher`` references (``teacher``: a distilled target's, see
    :class:`RunStart`). The run directory is locked from before ``run.json`` is
    written to the end of training: a second process training into it gets
    :class:`~ldm_lab.training.checkpoint.RunDirLockedError` instead of mixing its run into this one."""
    target, run_dir = get_target(name) if isinstance(name, str) else name, Path(run_dir)
    with run_dir_lock(run_dir):
        return _train_locked(target, run_dir, config, resume,
                             RunStart(first_stage, init_from, freeze_encoder, teacher), loader)


def items_a_run_sees(data: Dataset, config: TrainConfig) -> Dataset:
    """The training items a run can reach: all of them, or, for a run shorter than one epoch (steps x batch x
    accumulation below the dataset's size), that many, drawn once at random with the run's seed. A shuffled epoch
    shows a short run no more distinct items than this, so encoding the rest for a latent cache would be wasted."""
    seen = config.steps * config.batch_size * config.grad_accum_steps
    if seen >= len(data):
        return data
    return Subset(data, torch.randperm(len(data), generator=torch.Generator().manual_seed(config.seed))[:seen].tolist())


def _train_locked(target: TrainTarget, run_dir: Path, config: TrainConfig, resume: bool, start: RunStart,
                  loader: RunLoader) -> TrainResult:
    name = target.name
    model, existing = target.build_model(), latest_checkpoint(run_dir)
    if existing is not None and not resume:
        raise FileExistsError(f"{run_dir} already holds a run (newest checkpoint {existing.name}): pass --resume to "
                              "continue it, or choose another --out folder.")
    if existing is not None:
        recorded = read_run_record(run_dir)["target"]
        if recorded != name:
            raise ValueError(f"{run_dir} is a {recorded} run; resume it with `ldm-lab train {recorded} --resume`.")
    teacher = _teacher(target, run_dir if existing is not None else None, start, loader)
    if existing is None:
        _start(run_dir, target, model, start, loader, teacher)
    _apply_freezing(model, target, run_dir)
    data, task = training_dataset(target.dataset, target.resolution), target.build_task()
    if target.cache_latents:
        if existing is not None:
            load_weights(model, existing)  # the first stage that encodes must be the run's own, not a fresh one
        height, width = target.resolution
        # a view that changes only conditions (HiddenConditions) is applied over the cached items, so runs that
        # differ only in it share one encoding of the images (in the runs folder's .latents)
        images_of = DATASETS[target.dataset].images_of
        view, data = (data, data.data) if images_of else (None, data)
        store = CacheFile(run_dir / LATENT_CACHE_FILE, f"{images_of or target.dataset} train {height}x{width}",
                          shared_dir=runs_dir() / SHARED_LATENTS)
        keep = task.batch_fields(model) if teacher is None and isinstance(task, DiffusionTask) else None
        data = cache_latents(model, items_a_run_sees(data, config), store=store, keep=keep)  # a resume loads it
        data = view.over(data) if view is not None else data
    if teacher is not None:
        task = DistillationTask(task, teacher.run.model, target.distillation.output_weight)
    return train(model, task, data, config, run_dir, resume=resume, collate_fn=collate)


def _teacher(target: TrainTarget, resumed: Path | None, start: RunStart, loader: RunLoader) -> Teacher | None:
    """The trained teacher of a distilled target (None for any other): the one a resumed run recorded, else
    ``start.teacher``, else the teacher target's shipped model."""
    distillation = target.distillation
    if distillation is None:
        if start.teacher is not None:
            raise ValueError(f"{target.name} is not distilled from a teacher; drop --teacher.")
        return None
    reference = (read_run_record(resumed).get("teacher") if resumed is not None else None) or start.teacher
    reference = reference if reference is not None else distillation.teacher
    try:
        run = loader(reference)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{target.name} is distilled from a trained {distillation.teacher}, and {reference} is neither a run "
            f"directory nor a shipped model ({distillation.teacher} is not shipped: it is large). Train the teacher "
            f"first, `ldm-lab train {distillation.teacher} --out runs/{distillation.teacher}`, then pass --teacher "
            f"runs/{distillation.teacher}.") from error
    if run.target.name != distillation.teacher:
        raise ValueError(f"{reference} trained {run.target.name}; {target.name} is distilled from "
                         f"{distillation.teacher}: pass a run or shipped model of it as --teacher.")
    return Teacher(reference, run)
