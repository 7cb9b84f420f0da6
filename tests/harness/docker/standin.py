"""The stand-in for the official ``python:3.11-slim-bookworm`` base image.

No image can be pulled here, so the base image the services' Dockerfile names
is made from Debian's own packages and tagged with that name: ``debootstrap
--variant=minbase bookworm`` plus python3, python3-venv, python-is-python3
(``python`` on PATH), passwd (``useradd``) and ca-certificates, with apt's
caches, docs, man pages and locales removed as Debian's slim images do. Same
Debian release and PATH as the official image; Debian's Python 3.11 in
/usr/bin instead of one built into /usr/local. Its system CA bundle is the
host's: this machine reaches PyPI through a proxy only the host's bundle
trusts, so a build stage gets ``PIP_CERT=/etc/ssl/certs/ca-certificates.crt``.
It is a stand-in used only because images cannot be pulled; the Dockerfile is
the one that ships, and a real build uses the official image.

Built once per Debian snapshot (the date of the mirror's bookworm Release) and
host CA bundle, and cached as a ``docker save`` tar in
``<cache>/python-standin-<key>/image.tar``; later sessions ``docker load`` it.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import shutil
import urllib.request
from pathlib import Path

from platform_native import build, progress, versions
from tests.harness.docker.engine import DockerEngine

NAME = "python-standin"
MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "python-is-python3", "passwd", "ca-certificates")
PYTHON_VERSION = "3.11"  # bookworm's python3; the only version the stand-in can stand for
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PIP_CERT = str(CA_BUNDLE)  # where the bundle is inside the stand-in
SLIMMED = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
           "usr/share/info", "usr/share/locale")  # fmt: skip
# As in the official image: /usr/local first, UTF-8, an interpreter by default.
IMAGE_CHANGES = (
    "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)


def image_name(python_version: str = PYTHON_VERSION) -> str:
    """The official image the stand-in is tagged as."""
    if python_version != PYTHON_VERSION:
        raise ValueError(
            f"the stand-in base image has Debian bookworm's Python {PYTHON_VERSION}; "
            f"a service on Python {python_version} needs the official image"
        )
    return f"python:{python_version}-slim-bookworm"


def snapshot() -> str:
    """The mirror's bookworm Release date, e.g. ``20261128T025300Z``."""
    request = urllib.request.Request(f"{MIRROR}/dists/{SUITE}/InRelease")
    with urllib.request.urlopen(request, timeout=60) as answer:
        release = answer.read().decode(errors="replace")
    date = next(line[5:].strip() for line in release.splitlines() if line.startswith("Date:"))
    return email.utils.parsedate_to_datetime(date).strftime("%Y%m%dT%H%M%SZ")


def cache_key(debian_snapshot: str) -> str:
    """Snapshot plus a digest of what else goes into the image (packages, CA bundle)."""
    digest = hashlib.sha256(" ".join((*PACKAGES, *IMAGE_CHANGES)).encode())
    digest.update(CA_BUNDLE.read_bytes())
    return f"{PYTHON_VERSION}-{SUITE}-{debian_snapshot}-{digest.hexdigest()[:8]}"


def ensure(engine: DockerEngine) -> str:
    """Load the stand-in into ``engine`` (building it once per snapshot); return its tag."""
    name = image_name()
    try:
        key = cache_key(snapshot())
    except OSError as error:  # the mirror is out of reach: the newest stand-in built will do
        cached = sorted(versions.cache_dir().glob(f"{NAME}-{PYTHON_VERSION}-{SUITE}-*"))
        if not cached:
            raise
        key = cached[-1].name.removeprefix(f"{NAME}-")
        progress.say(f"    {MIRROR} unreachable ({error}); using the cached stand-in {key}")

    def recipe(out: Path, work: Path, log: build.BuildLog) -> None:
        _recipe(engine, key, out, work, log)

    archive = build.ensure(NAME, key, recipe)
    if engine.docker("image", "inspect", name, check=False).returncode != 0:
        progress.say(f"    loading the stand-in {name} ({archive.name})")
        engine.docker("load", "--input", str(archive / "image.tar"), timeout=900)
    return name


def _recipe(engine: DockerEngine, key: str, out: Path, work: Path, log: build.BuildLog) -> None:
    """debootstrap, slim down, import into ``engine`` and ``docker save`` into ``out``."""
    rootfs = work / "rootfs"
    debootstrap = log.require_tool("debootstrap")
    includes = f"--include={','.join(PACKAGES)}"
    log.run([debootstrap, "--variant=minbase", includes, SUITE, str(rootfs), MIRROR], cwd=work)
    log.run(["chroot", str(rootfs), "apt-get", "clean"], cwd=work)
    for folder in SLIMMED:
        for entry in (rootfs / folder).glob("*"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    shutil.copyfile(CA_BUNDLE, rootfs / CA_BUNDLE.relative_to("/"))
    python = log.run(["chroot", str(rootfs), "python", "--version"], cwd=work, capture=True)
    tar = work / "rootfs.tar"
    skip = [f"--exclude=./{special}/*" for special in ("dev", "proc", "sys")]
    log.run(["tar", "-C", str(rootfs), "--numeric-owner", *skip, "-cf", str(tar), "."], cwd=work)
    name = image_name()
    label = f"LABEL event-platform.stand-in={NAME}-{key}"
    changes = [arg for change in (*IMAGE_CHANGES, label) for arg in ("--change", change)]
    docker = engine.cli_env()
    log.run(["docker", "import", *changes, str(tar), name], cwd=work, env=docker)
    log.run(["docker", "save", "--output", str(out / "image.tar"), name], cwd=work, env=docker)
    about = {"image": name, "key": key, "python": python.strip(), "packages": PACKAGES}
    (out / "stand-in.json").write_text(json.dumps(about, indent=2) + "\n")
