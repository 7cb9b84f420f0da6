"""Remove what a disabled option does not need, record the answers, print the next steps.

The answers and the template's commit go to `.cruft.json`, so `cruft update` can bring
later template changes into the service. `cruft create` writes that file itself; for a
plain `cookiecutter` run this hook writes the same, when the template is a git checkout.
"""

import json
import shutil
import subprocess
from pathlib import Path

SERVICE = "{{ cookiecutter.service_name }}"
PACKAGE = "{{ cookiecutter.package_name }}"
HTTP_API = "{{ cookiecutter.http_api }}" == "True"
CONTEXT = json.loads({{ cookiecutter | jsonify | tojson }})

# The chart's Kong route: an Ingress or HTTPRoute, its rate limit and their helper.
ROUTE_TEMPLATES = ("ingress.yaml", "httproute.yaml", "kongplugin.yaml", "_kong.tpl")
NOT_FOR_WORKERS = [
    Path("kong"),
    Path("src") / PACKAGE / "api.py",
    Path("tests") / "test_api.py",
    *(Path("chart") / "templates" / name for name in ROUTE_TEMPLATES),
    Path("chart") / "ci" / "httproute-values.yaml",
]


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def git(repo_dir: str, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", repo_dir, *args], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.strip()


def template_commit(repo_dir: str) -> str | None:
    """The template's commit, or None if it has uncommitted changes (no commit matches)."""
    if git(repo_dir, "status", "--porcelain", "--untracked-files=no") != "":
        return None
    return git(repo_dir, "rev-parse", "HEAD")


def record_answers() -> bool:
    """Write `.cruft.json` for a plain cookiecutter run; False if the commit is unknown."""
    if "_commit" in CONTEXT:
        return True  # cruft create: it records the answers itself
    repo_dir = CONTEXT.get("_repo_dir", "")
    commit = template_commit(repo_dir) if repo_dir else None
    if commit is None:
        return False
    template = CONTEXT.get("_template", "")
    if not (":" in template or template.startswith("git@")):
        template = str(Path(repo_dir).resolve())  # a local checkout: where it is
    answers = {
        key: value
        for key, value in CONTEXT.items()
        if key not in {"_output_dir", "_repo_dir", "_checkout"}
    }
    state = {
        "template": template,
        "commit": commit,
        "checkout": None,
        "context": {"cookiecutter": {**answers, "_commit": commit}},
        "directory": None,
    }
    Path(".cruft.json").write_text(json.dumps(state, indent=2) + "\n")
    return True


def main() -> None:
    if not HTTP_API:
        for path in NOT_FOR_WORKERS:
            remove(path)
    recorded = record_answers()
    print(
        f"""
Created {SERVICE}. Next steps:
  cd {SERVICE} && git init && git add -A && git commit -m "Generated from the service template"
  python -m venv .venv && . .venv/bin/activate
  pip install -e '.[dev]'     # the event-chassis comes from your package index
  pytest                      # the unit tests need no server
The service needs Kafka; Consul and the collector are optional. From the platform
repository, ./deploy-all.sh starts it with everything it needs.
{"Template updates: cruft update" if recorded else "Run `cruft link <template>` to get template updates (cruft update)."}
"""
    )


if __name__ == "__main__":
    main()
