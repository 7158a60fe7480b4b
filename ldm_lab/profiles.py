"""Run profiles: how much compute a notebook or command may spend (DESIGN.md section 4).

``smoke`` is CI (tiny models, a few steps), ``laptop`` the default (a 2-core CPU, shipped checkpoints),
``gpu`` full fidelity. The environment variable ``LDM_LAB_PROFILE`` chooses; a notebook's
``parameters`` cell may override it.
"""

from __future__ import annotations

import os

from ldm_lab.names import unknown_name_error

PROFILES: tuple[str, ...] = ("smoke", "laptop", "gpu")
DEFAULT_PROFILE = "laptop"
PROFILE_ENV = "LDM_LAB_PROFILE"


def check_profile(name: str) -> str:
    """Return ``name`` if it is a known profile, else raise an error listing the choices."""
    if name not in PROFILES:
        raise unknown_name_error("profile", name, PROFILES, advice=f"Set {PROFILE_ENV}=... or PROFILE = '...' in "
                                 "the notebook's parameters cell.")
    return name


def current_profile() -> str:
    """The profile named by ``LDM_LAB_PROFILE``, or ``laptop``."""
    return check_profile(os.environ.get(PROFILE_ENV, DEFAULT_PROFILE).strip() or DEFAULT_PROFILE)
