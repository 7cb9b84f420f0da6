"""Remove what a disabled option does not need, then print the next steps."""

import shutil
from pathlib import Path

SERVICE = "{{ cookiecutter.service_name }}"
PACKAGE = "{{ cookiecutter.package_name }}"
HTTP_API = "{{ cookiecutter.http_api }}" == "True"

NOT_FOR_WORKERS = [
    Path("kong"),
    Path("src") / PACKAGE / "api.py",
    Path("src") / PACKAGE / "errors.py",
    Path("tests") / "test_api.py",
]


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def main() -> None:
    if not HTTP_API:
        for path in NOT_FOR_WORKERS:
            remove(path)
    print(
        f"""
Created {SERVICE}. Next steps:
  cd {SERVICE}
  python -m venv .venv && . .venv/bin/activate
  pip install -e '.[dev]'
  pytest    # the unit tests need no server
  {SERVICE}
The service needs Kafka; Consul and Jaeger are optional. From the platform
repository, ./deploy-all.sh starts it with everything it needs.
"""
    )


if __name__ == "__main__":
    main()
