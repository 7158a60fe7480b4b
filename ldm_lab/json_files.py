"""Reading the small JSON files ldm-lab keeps (manifests, run records, trainer state, dataset indexes) with an error
that names the file and says how to get a good copy, instead of a bare ``JSONDecodeError``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json(path: str | Path, fix: str) -> Any:
    """The parsed contents of ``path``; a ValueError naming the file, where it breaks and ``fix`` if it is not
    valid JSON (a file cut short by a full disk or a kill, or edited by hand)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}): "
                         f"it was cut short or edited. {fix}") from None
