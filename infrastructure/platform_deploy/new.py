"""`./deploy-all.sh new`: a service from the template, created with cruft.

cruft records the template's commit in the service's `.cruft.json`, so
`cruft update` can bring later template changes into it. The template is
recorded by its path relative to the service (the repository it lives in),
so updates work in any clone.

A service here gets the chassis by version range (`chassis_requirement`), not
by the git reference a service rendered elsewhere derives: its Docker build
sees neither this repository nor its history, and the chassis built from
chassis/ is served from `.wheels` as pip's find-links (see wheelhouse.py).
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

from platform_deploy.discovery import REPO


def chassis_requirement() -> str:
    """The range of the chassis in chassis/: `event-chassis~=X.Y`, any X.Y.z after it."""
    project = tomllib.loads((REPO / "chassis" / "pyproject.toml").read_text())["project"]
    major, minor = project["version"].split(".")[:2]
    return f"event-chassis~={major}.{minor}"


def create(services_dir: Path, name: str, answers: dict[str, str], *, ask: bool) -> Path:
    """Render the service `name` into `services_dir`; unanswered questions asked if `ask`."""
    from cruft import create as cruft_create

    services_dir.mkdir(parents=True, exist_ok=True)
    context = {"chassis_requirement": chassis_requirement(), **answers, "service_name": name}
    project = cruft_create(
        str(REPO),
        output_dir=services_dir,
        extra_context=context,
        no_input=not ask,
    )
    state_path = project / ".cruft.json"
    state = json.loads(state_path.read_text())
    state["template"] = os.path.relpath(REPO, project)
    state_path.write_text(json.dumps(state, indent=2) + "\n")
    return Path(project)
