"""The services of this platform: every directory under services/ that declares itself."""

from __future__ import annotations

from pathlib import Path

from platform_native.services import ServiceInfo

REPO = Path(__file__).resolve().parents[2]


def discover(services_dir: Path) -> list[ServiceInfo]:
    """Every directory under services/ that declares itself in [tool.event-platform]."""
    found = []
    for pyproject in sorted(services_dir.glob("*/pyproject.toml")):
        try:
            found.append(ServiceInfo.read(pyproject.parent))
        except KeyError:
            continue  # not a service of this platform
    return found
