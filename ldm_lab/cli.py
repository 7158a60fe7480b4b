"""The ``ldm-lab`` command. Each group is a small function that adds its sub-parser; ``main`` dispatches.

    ldm-lab data fetch [NAME ...]      download / verify datasets into the cache
    ldm-lab data info [--json]         what is cached: image counts and splits
    ldm-lab notebooks [NAME ...]       execute notebooks headless in a profile
    ldm-lab params PRESET [--json]     parameter count of each network of a preset
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


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
    nb.add_argument("--out", default="build/notebooks", help="folder for the executed copies")
    nb.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell")
    nb.set_defaults(func=_notebooks_run)


def _notebooks_run(args: argparse.Namespace) -> int:
    from ldm_lab.notebooks import find_notebooks, run_notebook
    from ldm_lab.profiles import current_profile

    profile = args.profile or current_profile()
    failed = []
    for path in find_notebooks(args.names):
        result = run_notebook(path, profile=profile, out_dir=args.out, timeout=args.timeout)
        status = "ok" if result.ok else f"FAILED: {result.error}"
        print(f"{path.name}: {status} ({result.seconds:.0f} s) -> {result.output}", flush=True)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ldm-lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_data_commands(sub)
    _add_notebook_commands(sub)
    _add_params_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        # Our own errors say what to change; a traceback would only hide that.
        print(f"ldm-lab: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
