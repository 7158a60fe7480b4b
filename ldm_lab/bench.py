"""Benchmarks that print figures (not tests): ``python -m ldm_lab.bench unet``.

``unet`` times our U-Net against diffusers' ``UNet2DConditionModel`` with the same config and the same
weights: one training step (forward + backward) and one inference forward. The two are timed in turns, so
that a busy machine slows both alike, and the best of the repeats is reported (as ``timeit`` advises: the
slower runs measure the other processes, not the code).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ldm_lab.device import resolve_device
from ldm_lab.nn.unet import UNetConfig

# SD 1.5's layout at a fifth of the width: conv projections, 8 heads, cross-attention at three levels.
BENCH_UNET = UNetConfig(model_channels=64, context_dim=256)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(step: Callable[[], None], device: torch.device) -> float:
    _synchronize(device)
    start = time.perf_counter()
    step()
    _synchronize(device)
    return time.perf_counter() - start


def _train_step(model: nn.Module, run: Callable[[], torch.Tensor]) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        run().square().mean().backward()
    return step


def _inference(run: Callable[[], torch.Tensor]) -> Callable[[], None]:
    def step() -> None:
        with torch.no_grad():
            run()
    return step


def bench_unet(config: UNetConfig = BENCH_UNET, batch: int = 16, size: int = 32, tokens: int = 77,
               repeats: int = 5, device: str | torch.device | None = None) -> dict[str, dict[str, float]]:
    """Best-of-``repeats`` seconds of a training step and an inference forward, ours vs diffusers, same weights."""
    from ldm_lab.convert.unet import unet_from_diffusers, unet_config_to_diffusers
    from diffusers import UNet2DConditionModel

    device = resolve_device(device)
    torch.manual_seed(0)
    theirs = UNet2DConditionModel(**unet_config_to_diffusers(config)).to(device)
    ours = unet_from_diffusers(theirs)
    x = torch.randn(batch, config.in_channels, size, size, device=device)
    t = torch.randint(0, 1000, (batch,), device=device)
    context = torch.randn(batch, tokens, config.context_dim, device=device)
    runs = {"ours": (ours, lambda: ours(x, t, context)),
            "diffusers": (theirs, lambda: theirs(x, t, context).sample)}
    steps = {(name, "train_step"): _train_step(model, run) for name, (model, run) in runs.items()}
    steps.update({(name, "inference"): _inference(run) for name, (_, run) in runs.items()})
    times: dict[tuple[str, str], list[float]] = {key: [] for key in steps}
    for step in steps.values():  # warm-up: allocator, kernels, SDPA backend choice
        step()
    for _ in range(repeats):
        for key, step in steps.items():
            times[key].append(_time(step, device))
    result = {kind: {name: min(times[name, kind]) for name in runs}
              for kind in ("train_step", "inference")}
    for kind in result:
        result[kind]["ratio"] = result[kind]["ours"] / result[kind]["diffusers"]
    return result


def _print_unet(result: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    print(f"U-Net benchmark: {BENCH_UNET.model_channels} channels x {BENCH_UNET.channel_mult}, batch {args.batch}, "
          f"{args.size}x{args.size} latents, {args.repeats} repeats, device {resolve_device(args.device)}, "
          f"{torch.get_num_threads()} CPU threads")
    print(f"{'':12s} {'ours (s)':>10s} {'diffusers (s)':>14s} {'ours/diffusers':>15s}")
    for kind, row in result.items():
        print(f"{kind:12s} {row['ours']:10.3f} {row['diffusers']:14.3f} {row['ratio']:15.2f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ldm_lab.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["unet"], help="what to benchmark")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=32, help="latent height and width")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None, help="default: the best available")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = bench_unet(batch=args.batch, size=args.size, repeats=args.repeats, device=args.device)
    if args.json:
        print(json.dumps(result))
    else:
        _print_unet(result, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
