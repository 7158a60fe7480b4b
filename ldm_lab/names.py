"""One error for a name that is not in a registry (presets, training targets, samplers, profiles, datasets,
schedules, splits, checkpoints, ...): every unknown-name error of the package is made here.

    raise unknown_name_error("preset", "sdxl-bse", PRESETS)
    # ValueError: unknown preset 'sdxl-bse'. Did you mean 'sdxl-base'? Valid presets: sd15, sd21, ...
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest_names(name: str, choices: Iterable[str]) -> list[str]:
    """The choices ``name`` probably meant: those it begins (``sdxl`` -> ``sdxl-base``, ``sdxl-refiner``), else the
    closest spelling (``difflib``), else none."""
    choices = list(choices)
    return [choice for choice in choices if name and choice.startswith(name)] or difflib.get_close_matches(
        name, choices, n=1)


def unknown_name_error(kind: str, name: str, choices: Iterable[str], *, listing: str | None = None,
                       advice: str = "") -> ValueError:
    """The error for ``name``, not one of the ``choices`` of ``kind``: what it probably meant and every valid
    name (``listing``: another way to list them, e.g. with descriptions; ``advice``: a sentence added at the end)."""
    choices = list(choices)
    close = closest_names(name, choices) if isinstance(name, str) else []
    suggestion = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    message = f"unknown {kind} {name!r}.{suggestion} Valid {kind}s: {listing or ', '.join(choices)}."
    return ValueError(f"{message} {advice}" if advice else message)
