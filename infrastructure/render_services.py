"""Re-render every service under services/ from the answers it was generated with.

    python infrastructure/render_services.py          # rewrite services/*
    python infrastructure/render_services.py --check  # exit 1 if any differs

Each service keeps its answers in `.cookiecutter-answers.json`. Local state
(`.venv`, caches) is left alone; everything else is replaced by a fresh render.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import sys
import tempfile
from pathlib import Path

from cookiecutter.main import cookiecutter

REPO = Path(__file__).resolve().parents[1]
SERVICES = REPO / "services"
ANSWERS = ".cookiecutter-answers.json"
LOCAL_STATE = {".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


def render_fresh(service: Path, output_dir: Path) -> Path:
    answers = json.loads((service / ANSWERS).read_text())
    answers["http_api"] = "yes" if answers["http_api"] else "no"
    rendered = cookiecutter(
        str(REPO), no_input=True, output_dir=str(output_dir), extra_context=answers
    )
    return Path(rendered)


def tracked_files(root: Path) -> set[Path]:
    return {
        path.relative_to(root)
        for path in root.rglob("*")
        if path.is_file()
        and not LOCAL_STATE.intersection(path.relative_to(root).parts)
        and not any(part.endswith(".egg-info") for part in path.parts)
    }


def differences(service: Path, fresh: Path) -> list[str]:
    """Files that are missing, extra or changed in `service` compared to `fresh`."""
    ours, theirs = tracked_files(service), tracked_files(fresh)
    found = [f"missing: {path}" for path in sorted(theirs - ours)]
    found += [f"extra: {path}" for path in sorted(ours - theirs)]
    found += [
        f"differs: {path}"
        for path in sorted(ours & theirs)
        if not filecmp.cmp(service / path, fresh / path, shallow=False)
    ]
    return found


def replace(service: Path, fresh: Path) -> None:
    for path in service.iterdir():
        if path.name in LOCAL_STATE:
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in fresh.iterdir():
        target = service / path.name
        shutil.copytree(path, target) if path.is_dir() else shutil.copy2(path, target)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report differences, change nothing")
    args = parser.parse_args()
    status = 0
    for answers in sorted(SERVICES.glob(f"*/{ANSWERS}")):
        service = answers.parent
        with tempfile.TemporaryDirectory() as tmp:
            fresh = render_fresh(service, Path(tmp))
            found = differences(service, fresh)
            if found and args.check:
                status = 1
                print(f"{service.name} differs from a fresh render:", *found, sep="\n  ")
            elif found:
                replace(service, fresh)
                print(f"re-rendered {service.name}")
            else:
                print(f"{service.name} is up to date")
    return status


if __name__ == "__main__":
    sys.exit(main())
