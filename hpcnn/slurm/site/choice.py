"""Which site profile a submission uses, and why: never the test cluster's by accident.

In order: ``--profile`` (or ``profile=`` in the Python API), the job config's ``slurm.profile``,
the environment variable ``HPCNN_PROFILE``, ``profile:`` in the user config file
(``$XDG_CONFIG_HOME/hpcnn/config.yaml``, default ``~/.config/hpcnn/config.yaml``). With none
of them set, submitting is an error that lists the shipped profiles and how to set a default;
the ``local`` test profile is only used when named. ``hpcnn submit`` prints the choice and
where it came from.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from ...config import strict
from ...errors import ProfileError

PROFILE_ENV = "HPCNN_PROFILE"
USER_KEYS = ("profile",)


@dataclass(frozen=True)
class ProfileChoice:
    value: str    # a shipped profile's name or a path to a profile YAML
    origin: str   # where the choice came from, for the submit output


def user_config_file(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/hpcnn/config.yaml`` (XDG base directories), default ``~/.config/hpcnn/config.yaml``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "hpcnn" / "config.yaml"


def _from_user_file(path: Path) -> str | None:
    data = strict.read_mapping(path, ProfileError, "hpcnn user config")
    for key in data:
        if key not in USER_KEYS:
            raise ProfileError(f"unknown key '{key}'", str(path),
                               strict.suggest(str(key), USER_KEYS) or f"known keys: {', '.join(USER_KEYS)}")
    value = data.get("profile")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ProfileError(f"'profile' must be a profile name or path, got {value!r}", str(path))
    value = os.path.expanduser(value)
    if ("/" in value or value.endswith((".yaml", ".yml"))) and not os.path.isabs(value):
        value = str(path.parent / value)  # a relative path is relative to the file that names it
    return value


def site_default(environ: Mapping[str, str] | None = None, shipped: Sequence[str] = ()) -> ProfileChoice:
    """The profile this user chose for every submission: $HPCNN_PROFILE, else the user config file.

    ``shipped``: the shipped profile names, listed in the error when there is no default.
    """
    env = os.environ if environ is None else environ
    value = env.get(PROFILE_ENV, "").strip()
    if value:
        return ProfileChoice(value, f"${PROFILE_ENV}")
    path = user_config_file(env)
    value = _from_user_file(path) if path.is_file() else None
    if value:
        return ProfileChoice(value, str(path))
    names = f"shipped: {', '.join(shipped)}; " if shipped else ""
    raise ProfileError("no site profile chosen", f"--profile, slurm.profile, $HPCNN_PROFILE and {path} are all unset",
                       f"pass --profile NAME ({names}or a path to your site's YAML), "
                       f"or set a default: export {PROFILE_ENV}=NAME, or write 'profile: NAME' into {path}")


def choose(flag=None, config_value: str | None = None, environ: Mapping[str, str] | None = None,
           config_what: str = "the job config's slurm.profile") -> ProfileChoice:
    """The profile to use and where that came from: flag > the job's slurm.profile > the site default."""
    if flag is not None:
        return ProfileChoice(getattr(flag, "name", None) or str(flag), "--profile")
    if config_value:
        return ProfileChoice(config_value, config_what)
    return site_default(environ)


def _same_profile(value: str, used) -> bool:
    if "/" in value or value.endswith((".yaml", ".yml")):
        return bool(used.source) and os.path.abspath(value) == os.path.abspath(used.source)
    return value == used.name


def explain(used, flag=None, config_value: str | None = None,
            config_what: str = "the job config's slurm.profile") -> str:
    """``profile NAME (FILE), chosen by ORIGIN``: the line `hpcnn submit` prints about the site it used.

    ``config_value``: the profile the job config (``config_what``: or a study file) names, when the
    caller has it; without it, a profile that is not the site default must have come from the config.
    """
    origin = "the job config's slurm.profile"
    if flag is not None or config_value:
        origin = choose(flag, config_value, config_what=config_what).origin
    else:
        with contextlib.suppress(ProfileError):  # no site default
            default = site_default()
            if _same_profile(default.value, used):
                origin = default.origin
    return f"profile {used.name} ({used.source or 'in memory'}), chosen by {origin}"


__all__ = ["PROFILE_ENV", "ProfileChoice", "choose", "explain", "site_default", "user_config_file"]
