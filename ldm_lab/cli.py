"""The ``ldm-lab`` command. Each group is a small function that adds its sub-parser; ``main`` dispatches.

    ldm-lab data fetch [NAME ...]      download / verify datasets into the cache
    ldm-lab data info [--json]         what is cached: image counts and splits
    ldm-lab notebooks [NAME ...] [--refresh-committed]   execute notebooks headless in a profile
    ldm-lab params PRESET [--json]     parameter count of each network of a preset
    ldm-lab train TARGET [--steps N] [--out DIR] [--resume] ...   train a lab model into a run directory
    ldm-lab distill TEACHER --out DIR [--steps N] [--resume] ...  ADD: a 1-4 step student of a text model
    ldm-lab sample RUN_DIR [--prompt TEXT | --class N] ...          draw a grid of images from a run
    ldm-lab eval RUN_DIR [--num-samples N] [--feature-space ...]    FID/KID (or PSNR/SSIM/rFID) -> eval.csv
    ldm-lab bench [TARGET ...] [--device ...] [--batch-size N]      train/sample throughput -> bench.csv
    ldm-lab bench-unet [--batch N] [--size S] [--json]             our U-Net vs diffusers', same weights
    ldm-lab quality [--minutes M] [--threads T] [--seeds S]        our recipe vs diffusers' at equal minutes
    ldm-lab quality --ablation INGREDIENT [...] [--minutes M]      the recipe vs one change at a time
    ldm-lab ship [TARGET ... | --all] [--device D] [--jobs N] [--budget-s S]  train + ship -> data/checkpoints
    ldm-lab pack OUT_DIR --runs RUNS_DIR [--checkpoints DIR] [--priority NAME ...]  a ship as a few small archives
    ldm-lab unpack FOLDER [--checkpoints DIR] [--runs DIR]          install the checkpoints that came back in them
    ldm-lab train-evaluator {fmnist-classifier,lab-clip} [--steps N] ...   retrain and ship an evaluation model
    ldm-lab compression-curve RUN_DIR ... --out CSV [--num-samples N]    FID per checkpoint of LDM-f runs (Fig. 6)
    ldm-lab compression-sampling RUN_DIR ... --out CSV               FID against DDIM steps and time (Fig. 7)
    ldm-lab compression-grids RUN_DIR ... --steps S ... --out PNG     samples of LDM-f runs at chosen checkpoints
    ldm-lab sd-lineage RUN_DIR ... --out CSV [--num-samples N]      FID vs CLIP score over guidance, v1.x lineage
    ldm-lab quality-arm {ours,diffusers} --minutes M --out DIR      one arm of `quality`, in a process of its own
    ldm-lab ablation-arm VARIANT --minutes M --out DIR             one arm of `quality --ablation`, likewise
    ldm-lab selftest --out DIR [--steps N] [--resume] ...           a tiny run through the whole trainer
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import math
import signal
import sys
import textwrap
from collections.abc import Sequence


# ---- argument types: a count of 0 or a NaN is a mistake to report, never "use the default" ----------------------
def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    value = int(text)  # a ValueError becomes argparse's "invalid positive_int value"
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text} (leave the option out for the "
                                         "default)")
    return value


def finite_float(text: str) -> float:
    """argparse type: a real number (``nan`` and ``inf`` are refused: they silently turn images black)."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0 (for options where 0 means "none", said in their help)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, not {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, not {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (seconds)."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, not {text}")
    return value


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    from ldm_lab.data import DATASETS

    data = sub.add_parser("data", help="fetch and describe the datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)

    fetch = data_sub.add_parser("fetch", help="download and verify datasets (all if none named)")
    fetch.add_argument("names", nargs="*", metavar="NAME", help=f"one of: {', '.join(DATASETS)}")
    fetch.set_defaults(func=_data_fetch)

    info = data_sub.add_parser("info", help="image counts and splits of each dataset")
    info.add_argument("--json", action="store_true", help="print one JSON object keyed by dataset name")
    info.set_defaults(func=_data_info)


def _data_fetch(args: argparse.Namespace) -> int:
    from ldm_lab.data import fetch_datasets

    for name, location in fetch_datasets(args.names or None).items():
        print(f"{name}: " + (f"ready at {location}" if location else "procedural, generated on demand"))
    return 0


def _data_info(args: argparse.Namespace) -> int:
    from ldm_lab.data import dataset_info

    info = dataset_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for name, entry in info.items():
        splits = ", ".join(f"{split} {count:,}" for split, count in entry["splits"].items())
        state = "available" if entry["available"] else f"missing: {entry['how_to_get']}"
        print(f"{name:14s} {entry['num_images']:>8,} images ({splits}) — {state}")
    return 0


def _add_notebook_commands(sub: argparse._SubParsersAction) -> None:
    from ldm_lab.profiles import PROFILES

    nb = sub.add_parser("notebooks", help="execute notebooks headless, writing executed copies")
    nb.add_argument("names", nargs="*", metavar="NAME",
                    help="notebook file names or number prefixes (default: all under notebooks/)")
    nb.add_argument("--profile", choices=PROFILES, default=None, help="default: $LDM_LAB_PROFILE or laptop")
    nb.add_argument("--out", default="build/notebooks",
                    help="folder for the executed copies (OUT/PROFILE/) and the figures and tables they save "
                         "(OUT/PROFILE/figures, OUT/PROFILE/results)")
    nb.add_argument("--refresh-committed", action="store_true",
                    help="write the figures and tables to the committed figures/ and data/results/ instead "
                         "(laptop or gpu profile), to update what the repository records")
    nb.add_argument("--timeout", type=positive_int, default=3600, help="seconds allowed per cell")
    nb.set_defaults(func=_notebooks_run)


def _notebooks_run(args: argparse.Namespace) -> int:
    from ldm_lab.notebooks import find_notebooks, run_notebook
    from ldm_lab.profiles import current_profile

    profile = args.profile or current_profile()
    failed = []
    for path in find_notebooks(args.names):
        result = run_notebook(path, profile=profile, out_dir=args.out, timeout=args.timeout,
                              refresh_committed=args.refresh_committed)
        status = "ok" if result.ok else f"FAILED: {result.error}"
        saved = result.outputs or "figures/ and data/results/"
        print(f"{path.name}: {status} ({result.seconds:.0f} s, {result.images} figures) -> {result.output}; "
              f"saved figures and tables in {saved}", flush=True)
        if not result.ok:
            failed.append(path.name)
    if failed:
        print(f"{len(failed)} notebook(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _add_params_command(sub: argparse._SubParsersAction) -> None:
    # The preset names are not imported here: that would load torch and open_clip for every command.
    params = sub.add_parser("params", help="parameter counts of a preset's networks (built on the meta device)")
    params.add_argument("preset", metavar="PRESET",
                        help="e.g. sd15, sdxl-base, kl-f8, lab-emoji (an unknown name lists all)")
    params.add_argument("--json", action="store_true", help="print one JSON object: component -> count")
    params.set_defaults(func=_params)


def _params(args: argparse.Namespace) -> int:
    from ldm_lab.presets import get_preset, parameter_counts

    counts = parameter_counts(args.preset)
    if args.json:
        print(json.dumps(counts))
        return 0
    print(f"{args.preset}: {get_preset(args.preset).description}")
    for component, count in counts.items():
        print(f"  {component:14s} {count:>15,}")
    return 0


class TargetNames:
    """The training targets of the registry (``ldm_lab.tasks.TARGETS``), by kind, read only when a help text shows
    them: importing the registry loads every model's code, which other commands should not wait for."""

    def __str__(self) -> str:
        from ldm_lab.tasks import TARGETS, AutoencoderTarget

        first_stages = [name for name, target in TARGETS.items() if isinstance(target, AutoencoderTarget)]
        models = [name for name in TARGETS if name not in first_stages]
        return f"Diffusion models: {', '.join(models)}. First stages: {', '.join(first_stages)}."


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter, wrapping help between words only (never inside a name such as lab-shapes-autoencoder)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def _add_target_argument(parser: argparse.ArgumentParser, name: str, what: str, **options) -> None:
    """A TARGET argument whose help, ``what`` and the registry's targets, lists them when it is shown (argparse
    fills the help's ``%(targets)s`` from the argument's attributes)."""
    action = parser.add_argument(name, metavar="TARGET", help=f"{what}. %(targets)s", **options)
    action.targets = TargetNames()


def _add_device_argument(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument("--device", default=default, help="cpu, cuda, cuda:1, mps, or auto: cuda, then mps, then "
                        f"cpu (default: {default or 'auto'})")


def _add_train_command(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a lab model (or its first stage) into a run directory",
                           formatter_class=HelpFormatter)
    _add_target_argument(train, "target", "the target to train")
    train.add_argument("--steps", type=positive_int, default=None, help="optimizer steps (default: the profile's, "
                       "$LDM_LAB_PROFILE: smoke 20, laptop 3000, gpu 50000)")
    train.add_argument("--out", default=None, help="run directory (default: build/runs/TARGET)")
    train.add_argument("--resume", action="store_true", help="continue the newest checkpoint in --out")
    train.add_argument("--batch-size", type=positive_int, default=None, help="samples per step (default: the target's)")
    train.add_argument("--time-limit", type=positive_float, default=None, metavar="S",
                       help="stop after S seconds, checkpointed (continue later with --resume)")
    train.add_argument("--first-stage", default=None, metavar="RUN_DIR",
                       help="latent targets: a run (or the shipped model) of the target's first stage to train on "
                            "(default with --init-from: the one its source was trained on)")
    train.add_argument("--init-from", default=None, metavar="RUN_DIR",
                       help="start from the weights of another run of TARGET (or its shipped model): fine-tuning; "
                            "a target fine-tuned from another (lab-emoji from lab-emoji-distilled) needs a run of "
                            "that one")
    train.add_argument("--freeze-encoder", action="store_true",
                       help="first stages: train the decoder only, so the latent space (and any diffusion model "
                            "trained on it) stays valid")
    train.add_argument("--teacher", default=None, metavar="RUN_DIR",
                       help="distilled targets (lab-emoji-distilled): a run (or the shipped model) of the teacher target whose "
                            "outputs the student learns (default: the teacher's shipped model)")
    _add_device_argument(train)
    train.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from ldm_lab.paths import runs_dir
    from ldm_lab.shipping import load_trained
    from ldm_lab.tasks import get_target, run_config, train_target
    from ldm_lab.training import read_metrics
    from ldm_lab.training.trainer import TIME_LIMIT

    config = run_config(get_target(args.target), steps=args.steps, batch_size=args.batch_size, device=args.device,
                        time_limit_s=args.time_limit)
    out = args.out or str(runs_dir() / args.target)
    result = train_target(args.target, out, config, resume=args.resume, first_stage=args.first_stage,
                          init_from=args.init_from, freeze_encoder=args.freeze_encoder, teacher=args.teacher,
                          loader=load_trained)
    metrics = read_metrics(out)
    summary = (f", loss {metrics[-1]['loss']:.4g}, {metrics[-1]['samples_per_s']:.1f} samples/s, "
               f"{metrics[-1]['elapsed_s']:.0f} s in all" if metrics else "")
    print(f"{args.target}: step {result.step}/{config.steps}{summary} -> {out}")
    resume = f"continue with: ldm-lab train {args.target} --out {out} --resume"
    if result.stopped_by == TIME_LIMIT:  # a planned, checkpointed end: success
        print(f"stopped at time limit ({config.time_limit_s:g} s), checkpointed; {resume}")
    elif result.stopped_by is not None:  # killed by a signal: checkpointed, but the caller must see it failed
        print(f"stopped by {result.stopped_by}, checkpointed; {resume}", file=sys.stderr)
        return 128 + signal.Signals[result.stopped_by].value  # the shell's code for death by that signal
    return 0


def _add_distill_command(sub: argparse._SubParsersAction) -> None:
    distill = sub.add_parser("distill", help="distil a trained text-to-image model into a 1-4 step student with "
                             "Adversarial Diffusion Distillation (SDXL-Turbo's recipe; ldm_lab.distill)")
    distill.add_argument("teacher", metavar="TEACHER", help="the teacher: a run directory or a shipped model, e.g. "
                         "lab-emoji")
    distill.add_argument("--out", required=True, metavar="DIR", help="run directory: distill.json, metrics.jsonl "
                         "(with elapsed_s and cpu_s), samples/, checkpoints/")
    distill.add_argument("--steps", type=positive_int, default=None, help="student updates (default: the profile's)")
    distill.add_argument("--batch-size", type=positive_int, default=None, help="images per update (default 8)")
    distill.add_argument("--time-limit", type=positive_float, default=None, metavar="S",
                         help="stop after this many seconds, checkpointed (continue with --resume)")
    distill.add_argument("--student-steps", type=positive_int, default=None,
                         help="N, the student's training timesteps (default 4: 999, 749, 499, 249)")
    distill.add_argument("--arm", default="add", metavar="ARM",
                         help="an arm of ADD's Tab. 1 ablation (ldm_lab.distill.arms.ARMS: add, the paper's "
                         "objective and the default; adversarial-only, distillation-only, random-init, "
                         "teacher-4-steps, add-plain-heads) or the LCM baseline (lcm)")
    distill.add_argument("--ship", default=None, metavar="NAME", help="when all steps ran, ship the student's EMA "
                         "U-Net as data/checkpoints/NAME (fp16; its manifest entry records this command and the "
                         "run's CPU minutes); the teacher must be a shipped model")
    distill.add_argument("--threads", type=positive_int, default=None, help="CPU threads (the machine may be shared)")
    distill.add_argument("--resume", action="store_true", help="continue the newest checkpoint in --out")
    _add_device_argument(distill)
    distill.set_defaults(func=_distill)


def _distill(args: argparse.Namespace) -> int:
    import torch

    from ldm_lab.distill import arm_config, distill, run_config

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = run_config(steps=args.steps, batch_size=args.batch_size, time_limit_s=args.time_limit,
                        device=args.device, student_steps=args.student_steps, base=arm_config(args.arm))
    result = distill(args.teacher, args.out, config, resume=args.resume)
    print(f"{result.step} student updates in {args.out}; load with ldm_lab.distill.load_student({args.out!r})")
    if args.ship and result.stopped_by is not None:
        print(f"not shipped: the run stopped before its last step; --resume it with --ship {args.ship}",
              file=sys.stderr)
    elif args.ship:
        from ldm_lab.device import describe_device, resolve_device
        from ldm_lab.distill.shipped import export_student

        entry = export_student(args.out, args.ship, "ldm-lab " + " ".join(sys.argv[1:]),
                               describe_device(resolve_device(config.train.device)))
        print(f"shipped {args.ship}: {entry.file}, {entry.size_bytes / 2**20:.1f} MiB")
    if result.stopped_by is not None and result.stopped_by in signal.Signals.__members__:
        print(f"stopped by {result.stopped_by}, checkpointed; continue with --resume", file=sys.stderr)
        return 128 + signal.Signals[result.stopped_by].value
    return 0


def _add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sampler", default=None, help="a sampler of ldm_lab.diffusion.SAMPLERS "
                        "(default: the target's, dpmpp_2m)")
    parser.add_argument("--steps", type=positive_int, default=None, help="sampler steps (default: the target's, 20)")
    parser.add_argument("--guidance-scale", type=finite_float, default=None,
                        help="classifier-free guidance scale (default: the target's; 1 = none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument("--raw-weights", action="store_true",
                        help="use the raw weights, not their EMA (which lags far behind early in a run)")
    _add_device_argument(parser)


def _add_sample_command(sub: argparse._SubParsersAction) -> None:
    sample = sub.add_parser("sample", help="draw a grid of images from a trained run")
    sample.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of an `ldm-lab train` run")
    condition = sample.add_mutually_exclusive_group()
    condition.add_argument("--prompt", default=None, help="text models: the prompt (default: the target's list)")
    condition.add_argument("--class", dest="label", type=int, default=None,
                           help="class models: the label (default: every class in turn)")
    sample.add_argument("--num", type=positive_int, default=16, help="number of images")
    sample.add_argument("--out", default=None, help="PNG file (default: RUN_DIR/samples/sample_seed<SEED>.png)")
    _add_sampling_arguments(sample)
    sample.set_defaults(func=_sample)


def _sampling_changes(args: argparse.Namespace) -> dict:
    """The sampling options given on the command line (``SamplingSettings`` fields); the others stay default."""
    given = {"sampler": args.sampler, "steps": args.steps, "guidance_scale": getattr(args, "guidance_scale", None),
             "seed": getattr(args, "seed", None)}
    return {name: value for name, value in given.items() if value is not None}


def _sampling_settings(args: argparse.Namespace, run):
    """The command line's sampler, steps, guidance and seed; the target's defaults where not given."""
    from ldm_lab.tasks.evaluate import default_settings

    return dataclasses.replace(default_settings(run), **_sampling_changes(args))


def _load_diffusion_run(args: argparse.Namespace):
    from ldm_lab.device import resolve_device
    from ldm_lab.shipping import load_trained
    from ldm_lab.tasks import DiffusionTarget

    run = load_trained(args.run_dir, resolve_device(args.device), ema=not args.raw_weights)
    if not isinstance(run.target, DiffusionTarget):
        raise ValueError(f"{args.run_dir} is a {run.target.name} run: an autoencoder reconstructs, it does not "
                         "sample. Evaluate it with `ldm-lab eval`, or sample from a diffusion run.")
    return run


def _sample_condition(run, args: argparse.Namespace) -> dict:
    """Labels or prompts for ``generate``: the user's, repeated, or the target's sample-grid conditions."""
    import torch

    if args.label is not None:
        return {"labels": torch.full((args.num,), args.label)}
    if args.prompt is not None:
        return {"prompts": [args.prompt] * args.num}
    return {"conditions": run.target.sample_conditions(args.num)}


def _sample(args: argparse.Namespace) -> int:
    from ldm_lab.metrics.fidelity import check_finite_images
    from ldm_lab.tasks import generate
    from ldm_lab.tasks.evaluate import DIVERGED
    from ldm_lab.training import save_image_grid

    run = _load_diffusion_run(args)
    settings = _sampling_settings(args, run)
    images = generate(run.model, args.num, **_sample_condition(run, args), settings=settings, progress=True)
    check_finite_images(images, "generated images", DIVERGED)
    out = save_image_grid(images, args.out or f"{args.run_dir}/samples/sample_seed{args.seed}.png")
    print(f"{len(images)} images from {run.target.name} step {run.step} ({settings.describe()}) -> {out}")
    return 0


def _add_eval_command(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser("eval", help="score a run against the validation split; appends to eval.csv")
    evaluate.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of an `ldm-lab train` run")
    evaluate.add_argument("--num-samples", type=positive_int, default=500,
                          help="generated and real images (FID is biased at small N: compare equal N only)")
    evaluate.add_argument("--min-samples", type=positive_int, default=None,
                          help="refuse fewer samples than this (default 50: smaller sets score noise; never below "
                          "the metrics' hard floor of 5)")
    evaluate.add_argument("--feature-space", default=None, help="fmnist-classifier, lab-clip or "
                          "inception-v3-compat (default: the dataset's: fmnist-classifier or lab-clip)")
    _add_sampling_arguments(evaluate)
    evaluate.set_defaults(func=_eval)


def _eval(args: argparse.Namespace) -> int:
    from ldm_lab.device import resolve_device
    from ldm_lab.metrics import append_csv
    from ldm_lab.shipping import load_trained
    from ldm_lab.tasks import DiffusionTarget
    from ldm_lab.tasks.evaluate import evaluate_run

    run = load_trained(args.run_dir, resolve_device(args.device), ema=not args.raw_weights)
    settings = _sampling_settings(args, run) if isinstance(run.target, DiffusionTarget) else None
    minimum = {} if args.min_samples is None else {"min_samples": args.min_samples}
    records = evaluate_run(run, args.num_samples, args.feature_space, settings, **minimum)
    path = append_csv(records, "eval")
    for record in records:
        print(f"{record.metric:10s} {record.value:12.4f}  ({record.feature_space}, n={record.num_samples})")
    print(f"{run.target.name} step {run.step}: {len(records)} rows -> {path}")
    return 0


def _add_bench_command(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="train and sample throughput and peak memory; appends to bench.csv",
                           formatter_class=HelpFormatter)
    _add_target_argument(bench, "targets", "targets to time (default: all)", nargs="*")
    bench.add_argument("--batch-size", type=positive_int, default=None,
                       help="samples per train step and per sampling call (default: each target's training batch)")
    bench.add_argument("--sampler", default=None, help="sampler timed for sample throughput (default: the "
                       "target's, dpmpp_2m)")
    bench.add_argument("--steps", type=positive_int, default=None, help="sampler steps (default: the target's, 20)")
    bench.add_argument("--repeats", type=positive_int, default=3, help="timed repetitions (the median is reported)")
    _add_device_argument(bench)
    bench.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from ldm_lab.bench import append_bench_rows, bench_target
    from ldm_lab.tasks import TARGETS, DiffusionTarget, get_target

    def sampling(name: str):  # the target's own, changed as the command line says; None: it does not sample
        target = get_target(name)
        return (dataclasses.replace(target.task.sampling, **_sampling_changes(args))
                if isinstance(target, DiffusionTarget) else None)

    rows = [bench_target(name, device=args.device, batch_size=args.batch_size, sampling=sampling(name),
                         repeats=args.repeats) for name in args.targets or TARGETS]
    _print_bench_rows(rows)
    print(f"{len(rows)} rows -> {append_bench_rows(rows)}")
    return 0


def _print_bench_rows(rows) -> None:
    print(f"{'target':16s} {'device':7s} {'batch':>5s} {'train samples/s':>16s} {'sample samples/s':>17s} "
          f"{'sampler/steps':>16s} {'peak MB':>9s}  memory")
    for r in rows:
        sampling = f"{r.sampler}/{r.sample_steps}" if r.sampler else "-"
        print(f"{r.target:16s} {r.device:7s} {r.batch_size:5d} {r.train_samples_per_s:16.2f} "
              f"{r.sample_samples_per_s:17.2f} {sampling:>16s} {r.peak_memory_mb:9.1f}  {r.memory_kind}")


def _add_bench_unet_command(sub: argparse._SubParsersAction) -> None:
    unet = sub.add_parser("bench-unet", help="time our U-Net against diffusers' UNet2DConditionModel with the same "
                          "config and weights: a training step and an inference forward (needs diffusers)")
    unet.add_argument("--batch", type=positive_int, default=16, help="samples per step")
    unet.add_argument("--size", type=positive_int, default=32, help="latent height and width")
    unet.add_argument("--repeats", type=positive_int, default=5, help="timed rounds (the best is reported)")
    unet.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch (default: torch's)")
    unet.add_argument("--json", action="store_true", help="print the result as one JSON object")
    _add_device_argument(unet)
    unet.set_defaults(func=_bench_unet)


def _bench_unet(args: argparse.Namespace) -> int:
    import torch

    from ldm_lab.bench import BENCH_UNET, bench_unet
    from ldm_lab.device import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    result = bench_unet(batch=args.batch, size=args.size, repeats=args.repeats, device=args.device)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"U-Net benchmark: {BENCH_UNET.model_channels} channels x {BENCH_UNET.channel_mult}, batch {args.batch}, "
          f"{args.size}x{args.size} latents, {args.repeats} repeats, device {resolve_device(args.device)}, "
          f"{torch.get_num_threads()} CPU threads")
    print(f"{'':12s} {'ours (s)':>10s} {'diffusers (s)':>14s} {'ours/diffusers':>15s}")
    for kind, row in result.items():
        print(f"{kind:12s} {row['ours']:10.3f} {row['diffusers']:14.3f} {row['ratio']:15.2f}")
    return 0


# ---- ship ----------------------------------------------------------------------------------------------------
def _add_ship_command(sub: argparse._SubParsersAction) -> None:
    ship = sub.add_parser("ship", help="train lab models (first stages first, several at a time, within a time "
                          "budget) and ship their EMA weights (fp16) with manifest entries into data/checkpoints")
    ship.add_argument("targets", nargs="*", metavar="TARGET", help="targets to ship; the first stages they need are "
                      "trained too unless already shipped")
    ship.add_argument("--all", action="store_true", help="ship every training target the notebooks use "
                      "(all but ldm_lab.shipping.plan.NOT_SHIPPED)")
    ship.add_argument("--profile", default=None, help="smoke, laptop or gpu: each run's steps (default: "
                      "$LDM_LAB_PROFILE or laptop)")
    ship.add_argument("--steps", type=positive_int, default=None, help="optimizer steps of every run (default: the profile's)")
    ship.add_argument("--jobs", type=positive_int, default=2, help="training runs at a time")
    ship.add_argument("--budget-s", type=positive_float, default=3600, help="wall-clock seconds for everything")
    ship.add_argument("--scenes", type=positive_int, default=20_000, help="Shapes scenes materialised for training")
    ship.add_argument("--no-materialise", dest="materialise", action="store_false",
                      help="train on the datasets as they are (render and decode on the fly)")
    ship.add_argument("--checkpoints", default=None, metavar="DIR", help="default: data/checkpoints")
    ship.add_argument("--runs", default=None, metavar="DIR", help="run folders and logs (default: "
                      "build/runs/ship/<time>)")
    _add_device_argument(ship)
    ship.set_defaults(func=_ship)


def _ship(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ldm_lab.profiles import current_profile
    from ldm_lab.shipping import ShipConfig, ship
    from ldm_lab.shipping.plan import shipped_targets
    from ldm_lab.tasks import TARGETS, get_target

    if bool(args.targets) == args.all:
        raise ValueError("name the targets to ship, or pass --all (not both); targets are: " + ", ".join(TARGETS))
    names = shipped_targets() if args.all else [get_target(name).name for name in args.targets]
    config = ShipConfig(device=args.device, profile=args.profile or current_profile(), steps=args.steps,
                        jobs=args.jobs, budget_s=args.budget_s, materialise=args.materialise, scenes=args.scenes,
                        checkpoints=Path(args.checkpoints) if args.checkpoints else None,
                        runs=Path(args.runs) if args.runs else None)
    rows = ship(names, config)
    return 0 if all(row.status == "shipped" for row in rows) else 1
# ---- end of ship ------------------------------------------------------------------------------------------------


def _add_pack_commands(sub: argparse._SubParsersAction) -> None:
    pack = sub.add_parser("pack", help="pack a ship's run files and checkpoints, most important first, into at most "
                          "8 tar.gz parts of <= 15 MiB for a return channel that takes only a few small files")
    pack.add_argument("out", metavar="OUT_DIR", help="folder for the parts (ship-N.tar.gz)")
    pack.add_argument("--runs", required=True, metavar="DIR", help="the ship's run folders and logs (its --runs)")
    pack.add_argument("--checkpoints", default=None, metavar="DIR", help="default: data/checkpoints")
    pack.add_argument("--priority", nargs="*", default=(), metavar="NAME", help="checkpoints to pack first")
    pack.add_argument("--extra", nargs="*", default=(), metavar="FILE", help="more small files to bring back")
    pack.set_defaults(func=_pack)

    unpack = sub.add_parser("unpack", help="unpack returned ship-*.tar.gz parts: run files under --runs, each "
                            "checkpoint whose SHA-256 matches its entry into --checkpoints, merged into its manifest")
    unpack.add_argument("folder", metavar="FOLDER", help="the folder holding the returned parts")
    unpack.add_argument("--checkpoints", default=None, metavar="DIR", help="default: data/checkpoints")
    unpack.add_argument("--runs", default=None, metavar="DIR", help="default: build/runs/ship-returned")
    unpack.set_defaults(func=_unpack)


def _pack(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ldm_lab.paths import checkpoints_dir
    from ldm_lab.shipping.pack import MiB, pack_ship

    checkpoints = Path(args.checkpoints) if args.checkpoints else checkpoints_dir()
    parts, left_out = pack_ship(Path(args.out), Path(args.runs), checkpoints, args.priority,
                                [Path(extra) for extra in args.extra])
    print("packed " + ", ".join(f"{p.name} ({p.stat().st_size / MiB:.1f} MiB)" for p in parts))
    print(f"left out (too big for the return channel): {', '.join(left_out) or 'nothing'}")
    return 0


def _unpack(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ldm_lab.shipping.pack import install

    installed, missing = install(Path(args.folder), Path(args.checkpoints) if args.checkpoints else None,
                                 Path(args.runs) if args.runs else None)
    print(f"installed {len(installed)}: {', '.join(installed)}")
    print(f"listed but not returned (their old files and entries stay): {', '.join(missing) or 'none'}")
    return 0


def _add_train_evaluator_command(sub: argparse._SubParsersAction) -> None:
    evaluator = sub.add_parser("train-evaluator", help="retrain a shipped evaluation model (a feature space of "
                               "FID/KID and CLIP score) with the trainer, measure it and ship it into data/checkpoints")
    models = evaluator.add_subparsers(dest="evaluator", required=True, metavar="MODEL")
    classifier = models.add_parser("fmnist-classifier", help="the Fashion-MNIST classifier (17 min on one thread)")
    _add_evaluator_options(classifier, steps=2000, epochs="4.3", lr=2e-3)
    classifier.set_defaults(func=_train_classifier)
    clip = models.add_parser("lab-clip", help="the small CLIP of emoji and Shapes captions (12 min on one thread)")
    _add_evaluator_options(clip, steps=700, epochs="9.5", lr=1e-3)
    clip.add_argument("--num-shapes", type=positive_int, default=6000,
                      help="Shapes train scenes next to the 3,432 emoji")
    clip.set_defaults(func=_train_lab_clip)


def _add_evaluator_options(parser: argparse.ArgumentParser, steps: int, epochs: str, lr: float) -> None:
    parser.add_argument("--steps", type=positive_int, default=steps, help=f"optimizer steps ({steps} x 128 = "
                        f"{epochs} epochs)")
    parser.add_argument("--batch-size", type=positive_int, default=128, help="samples per step")
    parser.add_argument("--lr", type=positive_float, default=lr, help="peak learning rate")
    parser.add_argument("--threads", type=positive_int, default=1, help="CPU threads (the machine may be shared)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the batches")
    _add_device_argument(parser)


def _evaluator_options(args: argparse.Namespace, options_class: type):
    """The command line's options as the evaluation model's training dataclass."""
    return options_class(**{field.name: getattr(args, field.name) for field in dataclasses.fields(options_class)})


def _train_classifier(args: argparse.Namespace) -> int:
    from ldm_lab.evaluation_models.train_classifier import ClassifierTraining, train_classifier

    entry = train_classifier(_evaluator_options(args, ClassifierTraining))
    print(f"fmnist-classifier: {entry.metrics} -> {entry.file}")
    return 0


def _train_lab_clip(args: argparse.Namespace) -> int:
    from ldm_lab.evaluation_models.train_lab_clip import LabClipTraining, train_lab_clip

    entry = train_lab_clip(_evaluator_options(args, LabClipTraining))
    print(f"lab-clip: {entry.metrics} -> {entry.file}")
    return 0


def _add_compression_curve_command(sub: argparse._SubParsersAction) -> None:
    curve = sub.add_parser("compression-curve", help="FID and KID (lab-clip space) of every kept checkpoint of "
                           "LDM-f runs, measured where they trained (LDM Fig. 6); appends to a CSV file")
    curve.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders of lab-ldm-* targets (other runs are "
                       "skipped, saying why)")
    curve.add_argument("--out", required=True, metavar="CSV", help="the CSV file to append the rows to")
    curve.add_argument("--num-samples", type=positive_int, default=512, help="generated images per checkpoint")
    curve.add_argument("--every", type=non_negative_int, default=0, help="only checkpoints at multiples of this "
                       "step (0: every kept checkpoint)")
    curve.add_argument("--steps", type=positive_int, default=None, help="sampler steps (default: those of "
                       "ldm_lab.compression.ablation.FIG6_SAMPLING)")
    curve.add_argument("--resamples", type=positive_int, default=100, help="bootstrap resamples of each FID")
    _add_device_argument(curve)
    curve.set_defaults(func=_compression_curve)


def _compression_curve(args: argparse.Namespace) -> int:
    from ldm_lab.compression.ablation import FIG6_SAMPLING
    from ldm_lab.compression.curve import record_curves

    settings = dataclasses.replace(FIG6_SAMPLING, **({"steps": args.steps} if args.steps else {}))
    record_curves(args.runs, args.out, args.num_samples, args.every, settings, args.resamples, args.device,
                  report=lambda line: print(line, flush=True))
    return 0


def _add_compression_sampling_command(sub: argparse._SubParsersAction) -> None:
    from ldm_lab.compression.tradeoff import FIG7_SAMPLER_STEPS

    sampling = sub.add_parser("compression-sampling", help="FID against sampling time of each LDM-f run's last "
                              "checkpoint, drawing with DDIM at several step counts (LDM Fig. 7); appends to a CSV "
                              "file")
    sampling.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders of lab-ldm-* targets")
    sampling.add_argument("--out", required=True, metavar="CSV", help="the CSV file to append the rows to")
    sampling.add_argument("--num-samples", type=positive_int, default=64, help="generated images per step count "
                          "(5 step counts: Fig. 7 costs 19x a 20-step draw of as many images)")
    sampling.add_argument("--sampler-steps", type=positive_int, nargs="+", default=list(FIG7_SAMPLER_STEPS),
                          help="DDIM step counts (default: Fig. 7's)")
    sampling.add_argument("--batch-size", type=positive_int, default=64, help="images per sampling call (timed)")
    sampling.add_argument("--resamples", type=positive_int, default=200, help="bootstrap resamples of each FID")
    _add_device_argument(sampling)
    sampling.set_defaults(func=_compression_sampling)


def _compression_sampling(args: argparse.Namespace) -> int:
    from ldm_lab.compression.curve import record_tradeoff

    record_tradeoff(args.runs, args.out, args.num_samples, args.sampler_steps, num_resamples=args.resamples,
                    batch_size=args.batch_size, device=args.device, report=lambda line: print(line, flush=True))
    return 0


def _add_compression_grids_command(sub: argparse._SubParsersAction) -> None:
    grids = sub.add_parser("compression-grids", help="one sample per emoji category from LDM-f runs at chosen "
                           "checkpoints, the same noise for all, drawn as one PNG figure")
    grids.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders of lab-ldm-* targets")
    grids.add_argument("--steps", type=positive_int, nargs="+", required=True, help="checkpoint steps to draw from "
                       "(every run must have kept them)")
    grids.add_argument("--out", required=True, metavar="PNG", help="the figure file to write")
    _add_device_argument(grids)
    grids.set_defaults(func=_compression_grids)


def _compression_grids(args: argparse.Namespace) -> int:
    from ldm_lab.compression.curve import record_grids

    print(f"-> {record_grids(args.runs, args.steps, args.out, device=args.device)}")
    return 0


def _add_sd_lineage_command(sub: argparse._SubParsersAction) -> None:
    lineage = sub.add_parser("sd-lineage", help="FID against CLIP score over guidance 1.5-8 of each stage of the v1.x "
                             "lineage in miniature (the SD model cards' plot, notebook 05); writes a CSV file")
    lineage.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders of lab-sd1-32px, lab-sd1-64px and "
                         "lab-sd1-cfg")
    lineage.add_argument("--out", required=True, metavar="CSV", help="the CSV file to write")
    lineage.add_argument("--num-samples", type=positive_int, default=None, help="held-out captions drawn per "
                         "guidance scale (default: all 354)")
    lineage.add_argument("--resamples", type=positive_int, default=200, help="bootstrap resamples of each interval")
    _add_device_argument(lineage)
    lineage.set_defaults(func=_sd_lineage)


def _sd_lineage(args: argparse.Namespace) -> int:
    from ldm_lab.versions.miniature import record_lineage

    record_lineage(args.runs, args.out, num_samples=args.num_samples, num_resamples=args.resamples,
                   device=args.device, report=lambda line: print(line, flush=True))
    print(f"-> {args.out}")
    return 0


def _add_sdxl_tricks_command(sub: argparse._SubParsersAction) -> None:
    tricks = sub.add_parser("sdxl-tricks", help="score SDXL's training tricks (notebook 06): Tab. 2's three models, "
                            "the refiner's hand-off, crop cut-offs and bucket distortion; appends rows to "
                            "data/results/sdxl_tricks.csv")
    tricks.add_argument("experiments", nargs="*", metavar="EXPERIMENT",
                        help=f"which to score: {', '.join(SDXL_EXPERIMENTS)} (default: all)")
    tricks.add_argument("--count", type=positive_int, default=512, help="held-out captions per model (size, "
                        "refiner)")
    tricks.add_argument("--geometry-count", type=positive_int, default=128, help="one-object prompts per (model, "
                        "case) (crop, buckets)")
    tricks.add_argument("--model", action="append", default=[], metavar="NAME=RUN_DIR", help="score a run folder "
                        "instead of the shipped NAME (repeatable), e.g. lab-sdxl-size=build/runs/lab-sdxl-size")
    tricks.set_defaults(func=_sdxl_tricks)


SDXL_EXPERIMENTS = ("size", "refiner", "geometry")


def _sdxl_tricks(args: argparse.Namespace) -> int:
    from ldm_lab.quality.sdxl import geometry_scores, refiner_scores, size_scores

    unknown = [name for name in args.experiments if name not in SDXL_EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment {', '.join(unknown)}: choose from {', '.join(SDXL_EXPERIMENTS)}.")
    models = {}
    for pair in args.model:
        name, separator, run = pair.partition("=")
        if not separator or not run:
            raise ValueError(f"--model takes NAME=RUN_DIR, e.g. lab-sdxl-size=build/runs/lab-sdxl-size; got {pair!r}")
        models[name] = run
    columns = ["experiment", "model", "case", "kid", "fid", "clip_score", "detail", "cut_off_fraction", "log2_stretch"]
    for experiment in args.experiments or SDXL_EXPERIMENTS:
        if experiment == "size":
            table = size_scores(args.count, models)
        elif experiment == "refiner":
            table = refiner_scores(args.count, models)
        else:
            table = geometry_scores(args.geometry_count, models)
        print(table[[c for c in columns if c in table]].to_string(index=False), flush=True)
    return 0


def _add_arm_options(arm: argparse.ArgumentParser, metavar: str, what: str, *, first_stage: str | None,
                     first_stage_help: str) -> None:
    """What every benchmark arm command takes: the arm, its minutes, its folder and its first stage."""
    arm.add_argument("arm", metavar=metavar, help=what)
    arm.add_argument("--minutes", type=positive_float, required=True, help="the arm's training minutes")
    arm.add_argument("--out", required=True, metavar="DIR", help="the arm's folder")
    arm.add_argument("--first-stage", default=first_stage, metavar="RUN_DIR", help=first_stage_help)


def _add_quality_arm_command(sub: argparse._SubParsersAction) -> None:
    arm = sub.add_parser("quality-arm", help="train one arm of `ldm-lab quality` into a folder (reusing a finished "
                         "one there) and print its record; `quality` runs each arm in a process of its own this way")
    _add_arm_options(arm, "ARM", "ours or diffusers", first_stage=None, first_stage_help="ours: a lab-autoencoder "
                     "run trained before; its recorded seconds count against the minutes")
    arm.set_defaults(func=_quality_arm)


def _quality_arm(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ldm_lab.profiles import current_profile
    from ldm_lab.quality.arms import check_arm, train_arm

    check_arm(args.arm)  # before anything is written
    record = train_arm(args.arm, args.minutes, Path(args.out), Path(args.first_stage) if args.first_stage else None)
    print(json.dumps(dataclasses.asdict(record)), f"(profile {current_profile()})")
    return 0


def _add_ablation_arm_command(sub: argparse._SubParsersAction) -> None:
    arm = sub.add_parser("ablation-arm", help="train one arm of `ldm-lab quality --ablation` (the recipe, or the "
                         "recipe with one ingredient changed) into a folder and print its record")
    _add_arm_options(arm, "VARIANT", "recipe, or an ingredient (ldm_lab.quality.ablation.INGREDIENTS)",
                     first_stage="lab-autoencoder", first_stage_help="a lab-autoencoder run or shipped name "
                     "(default: the shipped lab-autoencoder)")
    arm.set_defaults(func=_ablation_arm)


def _ablation_arm(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ldm_lab.quality.ablation import check_ingredient, train_variant

    check_ingredient(args.arm)  # before anything is written
    record = train_variant(args.arm, args.minutes, Path(args.out), args.first_stage)
    print(json.dumps(dataclasses.asdict(record)))
    return 0


def _add_selftest_command(sub: argparse._SubParsersAction) -> None:
    from ldm_lab.training.config import MIXED_PRECISION_CHOICES

    test = sub.add_parser("selftest", help="a tiny run through the whole trainer (checkpoints, resume, signals, "
                          "several processes under torchrun or accelerate launch); prints one JSON line per process")
    test.add_argument("--out", required=True, metavar="DIR", help="the run folder")
    test.add_argument("--steps", type=positive_int, default=200, help="optimizer steps")
    test.add_argument("--batch-size", type=positive_int, default=8, help="samples per process and micro-batch")
    test.add_argument("--grad-accum-steps", type=positive_int, default=1, help="micro-batches per step")
    test.add_argument("--checkpoint-every", type=non_negative_int, default=50,
                      help="steps between checkpoints (0: only at the end and on interrupt)")
    test.add_argument("--seed", type=int, default=0, help="seed of the run")
    test.add_argument("--input-noise", type=non_negative_float, default=0.1, help="size of the noise on the inputs "
                      "(drawn with torch, numpy and random, so a resume that forgot any RNG diverges; 0: none)")
    test.add_argument("--seconds-per-step", type=non_negative_float, default=0.0,
                      help="slow each step down (lets a test send a signal mid-run)")
    test.add_argument("--mixed-precision", default="no", choices=MIXED_PRECISION_CHOICES)
    test.add_argument("--resume", action="store_true", help="continue the newest checkpoint in --out")
    _add_device_argument(test, default="cpu")
    test.set_defaults(func=_selftest)


def _selftest(args: argparse.Namespace) -> int:
    from ldm_lab.training.selftest import SelftestConfig, run_selftest

    report = run_selftest(SelftestConfig(
        args.out, steps=args.steps, batch_size=args.batch_size, grad_accum_steps=args.grad_accum_steps,
        checkpoint_every=args.checkpoint_every, seed=args.seed, input_noise=args.input_noise,
        seconds_per_step=args.seconds_per_step, device=args.device, mixed_precision=args.mixed_precision,
        resume=args.resume))
    sys.stdout.write(json.dumps(report) + "\n")  # one write, so the lines of several processes do not interleave
    sys.stdout.flush()
    return 0


def _add_quality_command(sub: argparse._SubParsersAction) -> None:
    quality = sub.add_parser("quality", help="time to quality: the emoji pipeline trained with our CPU recipe and "
                             "with diffusers' untuned one for the same minutes, side by side, scored alike "
                             "-> time_to_quality.csv")
    quality.add_argument("--minutes", type=positive_float, default=60.0, help="training minutes of each arm")
    quality.add_argument("--threads", type=positive_int, default=1, help="torch threads of each arm (they run "
                         "at once: 2 arms x 1 thread fill 2 cores)")
    quality.add_argument("--seeds", type=positive_int, default=None, help="images per held-out caption (default 1; "
                         "3 with --score-shipped, --score-student and --score-teacher)")
    quality.add_argument("--out", default=None, help="the arms' folder (default build/runs/quality); finished "
                         "arms there are reused")
    quality.add_argument("--first-stage", default=None, metavar="RUN_DIR", help="ours: a lab-autoencoder run "
                         "trained before; its recorded seconds count against the minutes")
    quality.add_argument("--figure", default=None, help="the fixed-prompt grid (default figures/time_to_quality.png)")
    quality.add_argument("--score-shipped", default=None, metavar="NAME", help="instead of the benchmark: score the "
                         "shipped text-to-image model NAME as its bars are stated (one image per held-out caption and "
                         "seed, guidance 3; --seeds defaults to 3 here) -> text_to_image_scores.csv")
    quality.add_argument("--score-student", default=None, metavar="RUN_OR_NAME", help="instead of the benchmark: "
                         "score a few-step student (an `ldm-lab distill` run or a shipped student, e.g. "
                         "lab-emoji-turbo) at each of --student-steps with its own sampler -> distillation_scores.csv")
    quality.add_argument("--student-steps", type=positive_int, nargs="+", default=[1, 2, 4], metavar="N",
                         help="--score-student: sampling steps (default 1 2 4)")
    quality.add_argument("--score-teacher", type=positive_int, nargs="+", default=None, metavar="STEPS",
                         help="instead of the benchmark: score the teacher lab-emoji at these DPM-Solver++ steps "
                         "with guidance 3 (NFE = 2 x steps; ADD's comparison: 1 2 4 8 25 50), after the "
                         "real-vs-real row (training-split emoji, as many) -> distillation_scores.csv")
    quality.add_argument("--ablation", nargs="+", default=None, metavar="INGREDIENT", help="instead of the "
                         "benchmark: the recipe ablation, the recipe and one variant per named ingredient (each one "
                         "change, e.g. eps, no-min-snr, no-ema, batch-32, unet-small, no-latent-cache, "
                         "zero-terminal-snr), each for --minutes on --threads, on --first-stage (default the shipped "
                         "lab-autoencoder) -> recipe_ablation.csv")
    quality.add_argument("--parallel", type=positive_int, default=2, help="--ablation: arms trained at once")
    quality.set_defaults(func=_quality)


def _quality(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ldm_lab.paths import figures_dir
    from ldm_lab.quality.benchmark import QualityConfig, run_benchmark, score_shipped, verdict

    if args.score_shipped:
        row = score_shipped(args.score_shipped, seeds=args.seeds or 3)
        print(", ".join(f"{metric} {row[metric]:.3f} [{row[f'{metric}_ci_low']:.3f}, {row[f'{metric}_ci_high']:.3f}]"
                        for metric in ("kid", "fid", "clip_score")))
        return 0
    if args.score_student or args.score_teacher:
        from ldm_lab.quality.distillation import real_scores, student_scores, teacher_scores

        seeds = args.seeds or 3
        rows = ([student_scores(args.score_student, steps, seeds=seeds) for steps in args.student_steps]
                if args.score_student else
                [real_scores(seeds), *(teacher_scores(steps, seeds=seeds) for steps in args.score_teacher)])
        for row in rows:
            timing = f"{row['nfe']} NFE, {row.get('sample_s_per_image', 0):.3f} s per image"
            print(f"{row['model']} ({timing}): " + ", ".join(
                f"{metric} {row[metric]:.3f} [{row[f'{metric}_ci_low']:.3f}, {row[f'{metric}_ci_high']:.3f}]"
                for metric in ("kid", "fid", "clip_score")))
        return 0
    if args.ablation:
        from ldm_lab.quality.ablation import AblationConfig, run_ablation

        run_ablation(AblationConfig(tuple(args.ablation), minutes=args.minutes, threads=args.threads,
                                    parallel=args.parallel, seeds=args.seeds or 1,
                                    first_stage=args.first_stage or "lab-autoencoder",
                                    out=Path(args.out) if args.out else None))
        return 0
    config = QualityConfig(minutes=args.minutes, threads=args.threads, seeds=args.seeds or 1,
                           out=Path(args.out) if args.out else None,
                           first_stage=Path(args.first_stage) if args.first_stage else None)
    table = run_benchmark(config, figure=Path(args.figure) if args.figure else figures_dir() / "time_to_quality.png")
    for metric, lower in (("kid", True), ("fid", True), ("clip_score", False)):
        print(f"{metric}: {verdict(table, metric, lower)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ldm-lab", description=__doc__, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_data_commands(sub)
    _add_notebook_commands(sub)
    _add_params_command(sub)
    _add_train_command(sub)
    _add_distill_command(sub)
    _add_sample_command(sub)
    _add_eval_command(sub)
    _add_bench_command(sub)
    _add_bench_unet_command(sub)
    _add_quality_command(sub)
    _add_ship_command(sub)
    _add_pack_commands(sub)
    _add_train_evaluator_command(sub)
    _add_compression_curve_command(sub)
    _add_compression_sampling_command(sub)
    _add_compression_grids_command(sub)
    _add_sd_lineage_command(sub)
    _add_sdxl_tricks_command(sub)
    _add_quality_arm_command(sub)
    _add_ablation_arm_command(sub)
    _add_selftest_command(sub)
    return parser


OS_ERROR_FIXES = {  # errno -> what to do about it
    errno.EACCES: "make that folder writable, or choose another output folder (--out)",
    errno.EPERM: "make that folder writable, or choose another output folder (--out)",
    errno.EROFS: "that file system is read-only: choose an output folder elsewhere (--out)",
    errno.ENOSPC: "the disk is full: free space (df -h shows where), then run the command again",
    errno.EDQUOT: "your disk quota is spent: free space, then run the command again",
}


def describe_error(error: BaseException) -> str:
    """One line for the user: our own errors already say what to change; an operating-system error gets the
    file it concerns and the usual fix."""
    if isinstance(error, OSError) and error.errno in OS_ERROR_FIXES:
        where = f": {error.filename}" if error.filename else ""
        return f"{error.strerror}{where}; {OS_ERROR_FIXES[error.errno]}"
    return str(error)


def main(argv: Sequence[str] | None = None) -> int:
    from safetensors import SafetensorError  # small: the Rust extension only

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        # Our own errors say what to change (and name the file); a traceback would only hide that.
        print(f"ldm-lab: error: {describe_error(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
