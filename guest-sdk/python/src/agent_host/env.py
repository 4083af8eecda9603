"""Environment variables granted by the manifest.

Only the variables listed in `spec.capabilities.env` exist inside the agent;
everything else in the host's environment is invisible. Values are read from
`wasi:cli/environment` on every call rather than from `os.environ`, which
componentize-py fills while pre-initialising the component at build time.
"""

from typing import Optional

from wit_world.imports import environment

from .errors import CapabilityDenied


def var(name: str) -> Optional[str]:
    """The value of `name`, or None if the manifest does not declare it."""
    return next((v for k, v in environment.get_environment() if k == name), None)


def require(name: str) -> str:
    """The value of `name`; raises `CapabilityDenied` naming the variable when
    the manifest does not declare it."""
    value = var(name)
    if value is None:
        raise CapabilityDenied(
            f"environment variable `{name}` is not set: declare it in spec.capabilities.env"
        )
    return value
