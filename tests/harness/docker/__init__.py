"""Containers on a machine where no image can be pulled: a private Docker engine.

    engine.py   Debian's dockerd, installed if missing, on its own socket and folders
    standin.py  the stand-in for the official python:<version>-slim-bookworm base image,
                made with debootstrap and cached with `docker save`
    compose.py  Docker Compose, built from its Go module as a CLI plugin

Used by the tests (tests/docker_harness.py) to build and run the services' images
for real; nothing here is needed to run the platform.
"""
