"""Remove what a disabled option does not need, write where the chassis comes from, record
the answers, print the next steps.

The chassis requirement is written here, not by Jinja, because only this hook can find
out where the template was rendered from: a git URL and the commit of its clone, or a
folder. Unless `chassis_requirement` names an index's range, the service installs the
chassis of exactly that template: `git+<url>@<commit>#subdirectory=chassis` (a folder at
a clean commit counts as `file://` URL), or, for a folder with uncommitted changes, the
folder's `chassis/` as it is. `cruft update` renders the old and the new commit with this
hook and merges the difference, so the reference moves to the new commit.

The service's contract (`contracts/asyncapi.yaml`, its AsyncAPI document) is generated
here by the template's chassis (`python -m event_chassis.contract write`), with this
Python if it has the chassis' dependencies, else with a virtualenv of them cached in
`~/.cache/event-platform/contract-python-<hash of chassis/pyproject.toml>` (made once).

The answers and the template's commit go to `.cruft.json`, so `cruft update` can bring
later template changes into the service. `cruft create` writes that file itself; for a
plain `cookiecutter` run this hook writes the same, when the template is a git checkout.
"""

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

from cookiecutter.config import get_user_config
from cookiecutter.repository import expand_abbreviations, is_repo_url

SERVICE = "{{ cookiecutter.service_name }}"
PACKAGE = "{{ cookiecutter.package_name }}"
HTTP_API = "{{ cookiecutter.http_api }}" == "True"
DATABASE = "{{ cookiecutter.database }}" == "postgres"
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
# What the template's pyproject.toml holds where a chassis requirement goes (with extras).
PLACEHOLDER = re.compile(r'"<event-chassis(\[[a-z,-]+\])?>"')
CHASSIS_NAME = re.compile(r"^event[-_.]chassis\s*", re.IGNORECASE)  # pre_gen checked the rest


NEEDS_POSTGRES = " and PostgreSQL (its tests start one from this machine's server binaries)"
# The service's own state: its models, migrations and their test.
NOT_WITHOUT_A_DATABASE = [
    Path("src") / PACKAGE / "models.py",
    Path("src") / PACKAGE / "migrations",
    Path("tests") / "test_state.py",
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


def template_folder(path: str) -> Path | None:
    """A template's folder. Cookiecutter passes a path as typed: relative to the shell's
    folder (PWD), not to this hook's (the new service)."""
    folder = Path(os.environ.get("PWD", "."), Path(path).expanduser()) if path else None
    return folder.resolve() if folder and (folder / "cookiecutter.json").is_file() else None


def template_source() -> tuple[str | None, str | None, Path | None]:
    """The template's git URL (None: a folder), its commit (None: unknown) and its folder.

    cookiecutter gives the template as typed (`gh:` expanded here as it does) and the
    folder it rendered (a clone, for a URL); cruft, the URL or the absolute folder it
    cloned, and the commit.
    """
    template = str(CONTEXT.get("_template", ""))
    url = expand_abbreviations(template, get_user_config()["abbreviations"])
    url = url if is_repo_url(url) else None
    folder = template_folder(str(CONTEXT.get("_repo_dir") or ("" if url else template)))
    commit = CONTEXT.get("_commit") or (template_commit(str(folder)) if folder else None)
    return url, commit, folder


def pip_git_url(url: str) -> str:
    """The template's URL as pip's git URL: `git+` in front, `git@host:org/repo` as
    `ssh://git@host/org/repo`, `file:///path` as `file://localhost/path` (pip before 24.1,
    the one Python 3.11 brings, refuses a URL without a host)."""
    url = url.removeprefix("git+")
    scp = re.match(r"^(?P<host>[\w.-]+@[\w.-]+):(?P<path>.*)$", url)
    if scp and "://" not in url:
        url = f"ssh://{scp['host']}/{scp['path']}"
    return "git+" + re.sub(r"^file:///", "file://localhost/", url)


def chassis_source() -> str:
    """What follows the name in the chassis requirement: a range, or `@ <url>`."""
    answer = str(CONTEXT.get("chassis_requirement", "")).strip()
    if answer:
        rest = CHASSIS_NAME.sub("", answer)
    else:
        url, commit, folder = template_source()
        location = url or (folder.as_uri() if folder else None)
        if commit and location:
            rest = f"@ {pip_git_url(location)}@{commit}#subdirectory=chassis"
        elif folder and not url:
            rest = f"@ {(folder / 'chassis').as_uri()}"  # a working tree, as rendered
        else:
            sys.exit(
                f"ERROR: cannot tell where the chassis of {CONTEXT.get('_template')!r} is "
                "(no git commit): answer chassis_requirement (e.g. event-chassis~=1.1)"
            )
    return f" {rest}" if rest.startswith("@") else rest


def write_chassis_requirements() -> str:
    pyproject = Path("pyproject.toml")
    rest = chassis_source()
    text = PLACEHOLDER.sub(
        lambda found: json.dumps(f"event-chassis{found.group(1) or ''}{rest}"),
        pyproject.read_text(),
    )
    pyproject.write_text(text)
    return f"event-chassis{rest}"


def record_answers() -> bool:
    """Write `.cruft.json` for a plain cookiecutter run; False if the commit is unknown."""
    if "_commit" in CONTEXT:
        return True  # cruft create: it records the answers itself
    url, commit, folder = template_source()
    if commit is None:
        return False
    template = re.sub(r"^git\+", "", url) if url else str(folder)  # as cruft clones it
    answers = {
        key: value
        for key, value in CONTEXT.items()
        if key not in {"_output_dir", "_repo_dir", "_checkout"}
    }
    state = {
        "template": template,
        "commit": commit,
        "checkout": None,
        "context": {"cookiecutter": {**answers, "_template": template, "_commit": commit}},
        "directory": None,
    }
    Path(".cruft.json").write_text(json.dumps(state, indent=2) + "\n")
    return True


def contract_python(chassis: Path) -> Path:
    """A Python that has the chassis' dependencies: this one, or a cached virtualenv."""
    env = {**os.environ, "PYTHONPATH": str(chassis / "src")}
    probe = [sys.executable, "-c", "import event_chassis.contract"]
    if subprocess.run(probe, env=env, capture_output=True, check=False).returncode == 0:
        return Path(sys.executable)
    digest = hashlib.sha256((chassis / "pyproject.toml").read_bytes()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "event-platform"
    env_dir = cache / f"contract-python-{digest}"
    python = env_dir / "bin" / "python"
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f".contract-python-{digest}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another render may be making it
        if not (env_dir / ".complete").exists():
            print(f"Installing the chassis' dependencies into {env_dir} (once) ...")
            shutil.rmtree(env_dir, ignore_errors=True)
            venv.create(env_dir, with_pip=True)
            pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            subprocess.run([*pip, f"{chassis}[postgres]"], check=True, capture_output=True)
            (env_dir / ".complete").touch()
    return python


def write_contract() -> None:
    """contracts/asyncapi.yaml from the rendered service, by the template's chassis."""
    folder = template_source()[2]
    chassis = folder / "chassis" if folder else None
    command = "python -m event_chassis.contract write"
    if chassis is None or not (chassis / "pyproject.toml").is_file():
        print(f"WARNING: no chassis next to the template: run `{command}` once installed")
        return
    try:
        python = contract_python(chassis)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(chassis / "src"), "src"])}
        result = subprocess.run(
            [str(python), "-m", "event_chassis.contract", "write"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"WARNING: contracts/asyncapi.yaml not written ({error}): run `{command}`")
        return
    if result.returncode != 0:
        print(f"WARNING: `{command}` failed:\n{result.stderr[-2000:]}")


def main() -> None:
    if not HTTP_API:
        for path in NOT_FOR_WORKERS:
            remove(path)
    if not DATABASE:
        for path in NOT_WITHOUT_A_DATABASE:
            remove(path)
    chassis = write_chassis_requirements()
    recorded = record_answers()
    write_contract()
    print(
        f"""
Created {SERVICE}. Next steps:
  cd {SERVICE} && git init && git add -A && git commit -m "Generated from the service template"
  python -m venv .venv && . .venv/bin/activate
  pip install -e '.[dev]'     # with {chassis}
  pytest                      # the unit tests need no server
The service needs Kafka{NEEDS_POSTGRES if DATABASE else ""}; Consul and the collector are optional. From the platform
repository, ./deploy-all.sh starts it with everything it needs.
{"Template updates: cruft update" if recorded else "Run `cruft link <template>` to get template updates (cruft update)."}
"""
    )


def remove_this_copy() -> None:
    """cookiecutter runs a rendered copy of this hook from the temporary folder and leaves
    it there (cookiecutter 2.7's hooks.run_script_with_context): remove that copy."""
    here = Path(__file__).resolve()
    if here.parent == Path(tempfile.gettempdir()).resolve() and here.name.startswith("tmp"):
        here.unlink(missing_ok=True)


if __name__ == "__main__":
    remove_this_copy()
    main()
