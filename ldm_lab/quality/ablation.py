"""The recipe ablation: lab-emoji's CPU recipe against variants that each change exactly one ingredient, all trained
for the same wall-clock minutes on the same threads and scored as the time-to-quality benchmark scores its arms.

    ldm-lab quality --ablation eps no-min-snr no-ema --minutes 30    # data/results/recipe_ablation.csv

Every arm starts from the same trained first stage (default: the shipped ``lab-autoencoder``), so the minutes are
the diffusion model's alone and only the named ingredient differs. The arms train at a constant learning rate
after warm-up: the recipe's cosine decay is as long as the step count, which would need each variant's speed in
advance (``unet-small`` makes several times more steps in a minute than the recipe); a constant rate lets every
arm use all its minutes, recipe included. Run one arm in a process of its own:
``ldm-lab ablation-arm eps --minutes 30 --out DIR``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd
import torch

from ldm_lab.diffusion import SamplingSettings
from ldm_lab.diffusion.parameterisation import Prediction
from ldm_lab.metrics import DualEncoder, extract_features, lab_clip_encoder, to_uint8
from ldm_lab.names import unknown_name_error
from ldm_lab.paths import git_commit, results_dir, runs_dir
from ldm_lab.presets import get_preset
from ldm_lab.presets.emoji import LAB_PROMPT_UNET
from ldm_lab.quality.arms import ArmRecord, prompt_images
from ldm_lab.tasks.runs import run_config, train_target
from ldm_lab.tasks.targets import DiffusionTarget, get_target
from ldm_lab.training import latest_checkpoint, load_weights, read_metrics
from ldm_lab.training.checkpoint import EMA_FILE

RECIPE = "recipe"               # the arm that changes nothing: lab-emoji as its target trains it
RECIPE_TARGET = "lab-emoji-large"
TABLE = "recipe_ablation"       # data/results/recipe_ablation.csv
METRICS = (("kid", True), ("fid", True), ("clip_score", False))  # (metric, lower is better)
UNLIMITED_STEPS = 10**9         # the time limit stops every arm; the cosine over this many steps stays at the peak


@dataclass(frozen=True)
class Ingredient:
    """One change of the recipe: a one-line description and the function that makes it on the recipe's target."""

    description: str
    change: Callable[[DiffusionTarget], DiffusionTarget]


def _preset(**changes) -> Callable[[DiffusionTarget], DiffusionTarget]:
    """Change fields of the target's preset (prediction, schedule option, U-Net)."""
    return lambda target: replace(target, model=replace(
        target.model, preset=replace(get_preset(target.model.preset), **changes)))


def _model(**changes) -> Callable[[DiffusionTarget], DiffusionTarget]:
    """Change fields of the target's LatentDiffusionConfig (loss weighting, condition dropout)."""
    return lambda target: replace(target, model=replace(target.model, **changes))


def _train(**changes) -> Callable[[DiffusionTarget], DiffusionTarget]:
    """Change fields of the target's TrainConfig (batch, learning rate, warm-up, EMA)."""
    return lambda target: replace(target, train=replace(target.train, **changes))


INGREDIENTS: dict[str, Ingredient] = {
    "eps": Ingredient("eps-prediction instead of v (Ho et al. 2020; SD 1.x)", _preset(prediction=Prediction.EPS)),
    "no-min-snr": Ingredient("DDPM's unweighted loss instead of min-SNR-5 (Hang et al. 2023)",
                             _model(snr_gamma=None)),
    "no-ema": Ingredient("the raw weights instead of their EMA (decay 0.995)", _train(ema_decay=0.0)),
    "batch-32": Ingredient("batch 32 instead of 16 (half the updates in the same time)", _train(batch_size=32)),
    "lr-1e-4": Ingredient("peak learning rate 1e-4 instead of 2e-4", _train(lr=1e-4)),
    "no-warmup": Ingredient("no learning-rate warm-up instead of 200 steps", _train(warmup_steps=0)),
    "unet-small": Ingredient("the 1.2 M U-Net of the conditioned lab models (LAB_PROMPT_UNET) instead of the 16.3 M",
                             _preset(unet=LAB_PROMPT_UNET)),
    "no-latent-cache": Ingredient("encode every batch with the frozen first stage instead of once, before training",
                                  lambda target: replace(target, cache_latents=False)),
    "zero-terminal-snr": Ingredient("the schedule rescaled to zero terminal SNR (Lin et al. 2023, Alg. 1)",
                                    _preset(zero_terminal_snr=True)),
}


def check_ingredient(name: str) -> str:
    """``name`` if it is the recipe or an ingredient; else the "did you mean" error listing them."""
    if name == RECIPE or name in INGREDIENTS:
        return name
    listing = "; ".join(f"{key}: {ingredient.description}" for key, ingredient in INGREDIENTS.items())
    raise unknown_name_error("ingredient", name, INGREDIENTS, listing=listing)


def variant_target(name: str) -> DiffusionTarget:
    """The recipe's target with ingredient ``name`` changed (``recipe``: unchanged), named ``lab-emoji-large+NAME``."""
    recipe = get_target(RECIPE_TARGET)
    if check_ingredient(name) == RECIPE:
        return recipe
    ingredient = INGREDIENTS[name]
    return replace(ingredient.change(recipe), name=f"{RECIPE_TARGET}+{name}",
                   description=f"{recipe.description}; ablation: {ingredient.description}")


def train_variant(name: str, minutes: float, out: Path, first_stage: str | Path = "lab-autoencoder") -> ArmRecord:
    """Train the variant ``name`` for ``minutes`` into ``out`` on ``first_stage`` (a run or a shipped first stage),
    and record it (a folder with a finished record is reused)."""
    from ldm_lab.shipping.load import load_trained  # shipping imports the training targets: import where used

    out.mkdir(parents=True, exist_ok=True)
    done = ArmRecord.load(out)
    if done is not None:
        return done
    target, seconds = variant_target(name), 60.0 * minutes
    start = time.perf_counter()
    result = train_target(target, out / "run", run_config(target, steps=UNLIMITED_STEPS, time_limit_s=seconds),
                          first_stage=first_stage, loader=load_trained, resume=(out / "run").is_dir())
    wall = time.perf_counter() - start
    last = read_metrics(out / "run")[-1]
    record = ArmRecord(name, minutes, torch.get_num_threads(), steps={"diffusion": last["step"]},
                       seconds={"diffusion": last["elapsed_s"], "diffusion_setup": wall - last["elapsed_s"]},
                       images_per_second={"diffusion": last["step"] * target.train.batch_size / last["elapsed_s"]},
                       parameters={"unet": sum(p.numel() for p in result.model.unet.parameters())})
    record.save(out)
    return record


def load_variant(name: str, out: Path) -> torch.nn.Module:
    """The variant's trained model from its folder: the newest checkpoint, its EMA weights when it kept them."""
    checkpoint = latest_checkpoint(out / "run")
    if checkpoint is None:
        raise FileNotFoundError(f"{out / 'run'} has no checkpoint: train the variant first "
                                f"(ldm-lab ablation-arm {name} --minutes M --out {out}).")
    model = variant_target(name).build_model()
    load_weights(model, checkpoint, ema=(checkpoint / EMA_FILE).exists())
    return model.eval()


@dataclass(frozen=True)
class AblationConfig:
    """One recipe ablation: the recipe and each named ingredient's variant, for the same minutes."""

    ingredients: tuple[str, ...]      # names in INGREDIENTS; each arm changes exactly one
    minutes: float = 30.0             # wall-clock training minutes of each arm (the diffusion model's)
    threads: int = 1                  # torch threads of each arm
    parallel: int = 2                 # arms trained at once (2 arms x 1 thread fill 2 cores)
    seeds: int = 1                    # images per held-out caption, one seed each
    sampling_steps: int = 20          # DPM-Solver++ steps
    guidance_scale: float = 3.0       # CFG scale of every arm (the recipe's own)
    num_resamples: int = 200          # bootstrap resamples of each interval
    first_stage: str = "lab-autoencoder"  # the first stage every arm trains on: a run folder or a shipped name
    out: Path | None = None           # the arms' folders (default build/runs/recipe_ablation)

    def __post_init__(self) -> None:
        if not self.ingredients:
            raise ValueError(f"name at least one ingredient to ablate: {', '.join(INGREDIENTS)}.")
        for name in self.ingredients:
            if check_ingredient(name) == RECIPE:
                raise ValueError("the recipe is always trained; name only the ingredients to change.")
        counts = {"threads": self.threads, "parallel": self.parallel, "seeds": self.seeds,
                  "sampling_steps": self.sampling_steps}
        if self.minutes <= 0 or min(counts.values()) < 1:
            raise ValueError(f"minutes must be positive and {', '.join(counts)} at least 1; got {self.minutes}, "
                             + ", ".join(str(value) for value in counts.values()) + ".")

    @property
    def arms(self) -> tuple[str, ...]:
        return (RECIPE, *dict.fromkeys(self.ingredients))

    @property
    def folder(self) -> Path:
        return self.out or runs_dir() / TABLE


def train_arms(config: AblationConfig, report: Callable[[str], None] = print) -> dict[str, ArmRecord]:
    """Train every arm, ``config.parallel`` processes at a time with ``config.threads`` threads each."""
    env = {**os.environ, "OMP_NUM_THREADS": str(config.threads), "MKL_NUM_THREADS": str(config.threads),
           "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "30"}
    waiting, running, records = list(config.arms), {}, {}
    while waiting or running:
        while waiting and len(running) < config.parallel:
            arm = waiting.pop(0)
            folder = config.folder / arm
            folder.mkdir(parents=True, exist_ok=True)
            argv = [sys.executable, "-m", "ldm_lab.cli", "ablation-arm", arm, "--minutes", str(config.minutes),
                    "--out", str(folder), "--first-stage", str(config.first_stage)]
            log = open(config.folder / f"{arm}.log", "a", encoding="utf-8")
            running[arm] = (subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env), log)
            report(f"{arm}: training for {config.minutes:g} min on {config.threads} thread(s), log {log.name}")
        time.sleep(1.0)
        for arm, (process, log) in list(running.items()):
            if process.poll() is None:
                continue
            log.close()
            del running[arm]
            record = ArmRecord.load(config.folder / arm)
            if process.returncode != 0 or record is None:
                raise RuntimeError(f"the {arm} arm failed (exit {process.returncode}); see "
                                   f"{config.folder / f'{arm}.log'}.")
            records[arm] = record
    return records


def change_verdict(variant: pd.Series, recipe: pd.Series, metric: str, lower_is_better: bool) -> str:
    """The project's one rule, for the change a variant makes: intervals apart -> it helps / hurts;
    overlapping -> undecided."""
    low, high = f"{metric}_ci_low", f"{metric}_ci_high"
    better = variant[high] < recipe[low] if lower_is_better else variant[low] > recipe[high]
    worse = recipe[high] < variant[low] if lower_is_better else recipe[low] > variant[high]
    return "helps" if better else "hurts" if worse else "undecided (intervals overlap)"


def arm_row(arm: str, record: ArmRecord, config: AblationConfig, captions: Sequence[str], real_features: torch.Tensor,
            encoder: DualEncoder) -> dict:
    """One arm's images for the held-out captions, scored as the benchmark scores its arms."""
    from ldm_lab.quality.benchmark import score

    model, per_seed = load_variant(arm, config.folder / arm), len(captions) // config.seeds
    start = time.perf_counter()
    settings = SamplingSettings(steps=config.sampling_steps, guidance_scale=config.guidance_scale)
    images = torch.cat([prompt_images(model, captions[s * per_seed:(s + 1) * per_seed], s, settings)
                        for s in range(config.seeds)])
    seconds_per_image = (time.perf_counter() - start) / len(images)
    return {"variant": arm, "change": INGREDIENTS[arm].description if arm in INGREDIENTS else "none (the recipe)",
            **score(to_uint8(images.cpu()), captions, real_features, encoder, config.num_resamples),
            "minutes": record.minutes, "threads": record.threads, "steps": record.steps.get("diffusion"),
            "train_s": record.seconds.get("diffusion"), "setup_s": record.seconds.get("diffusion_setup"),
            "train_images_per_s": record.images_per_second.get("diffusion"),
            "sample_s_per_image": seconds_per_image, "parameters": sum(record.parameters.values())}


def ablation_table(rows: Sequence[dict]) -> pd.DataFrame:
    """The rows with a verdict per metric for each variant's change against the recipe's row."""
    table = pd.DataFrame(rows)
    recipe = table.set_index("variant").loc[RECIPE]
    for metric, lower in METRICS:
        table[f"{metric}_verdict"] = [
            "" if row["variant"] == RECIPE else change_verdict(row, recipe, metric, lower)
            for _, row in table.iterrows()]
    return table


def run_ablation(config: AblationConfig, report: Callable[[str], None] = print,
                 table_folder: Path | None = None) -> pd.DataFrame:
    """Train (or reuse) the recipe and each variant, score them, append the rows to ``recipe_ablation.csv`` and
    report the table. Returns this run's rows."""
    from ldm_lab.quality.benchmark import FEATURE_SPACE, held_out_captions

    records = train_arms(config, report)
    real, captions = held_out_captions(config.seeds)
    real_features, encoder = extract_features(real, FEATURE_SPACE), lab_clip_encoder()
    table = ablation_table([arm_row(arm, records[arm], config, captions, real_features, encoder)
                            for arm in config.arms])
    table = table.assign(feature_space=FEATURE_SPACE, seeds=config.seeds, guidance_scale=config.guidance_scale,
                         sampling_steps=config.sampling_steps, first_stage=str(config.first_stage),
                         git_commit=git_commit(), cpu_threads_total=os.cpu_count())
    path = (table_folder or results_dir()) / f"{TABLE}.csv"
    table.to_csv(path, mode="a", header=not path.exists(), index=False)
    report(format_table(table))
    return table


def format_table(table: pd.DataFrame) -> str:
    """KID, FID and CLIP score with their intervals, steps and verdicts, one line per variant."""
    def cell(row: pd.Series, metric: str) -> str:
        return f"{row[metric]:.3f} [{row[f'{metric}_ci_low']:.3f}, {row[f'{metric}_ci_high']:.3f}]"

    shown = pd.DataFrame({
        "variant": table["variant"], "steps": table["steps"],
        **{metric: [cell(row, metric) for _, row in table.iterrows()] for metric, _ in METRICS},
        **{f"{metric} verdict": table[f"{metric}_verdict"] for metric, _ in METRICS}})
    return shown.to_string(index=False)
