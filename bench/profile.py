"""Summarise a py-spy raw (collapsed stacks) profile: where the service's time goes.

    python bench/profile.py PROFILE.txt [TOP]

Prints the frames with the most samples, inclusive (the frame or anything it
called) and self, as shares of all samples.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path


def shares(path: Path) -> tuple[int, Counter[str], Counter[str]]:
    """All samples, and samples by frame: inclusive (the frame or anything it called) and self."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    return total, inclusive, own


def summarise(path: Path, top: int = 40) -> str:
    total, inclusive, own = shares(path)
    if not total:
        return "no samples\n"
    lines = [f"{total} samples", "", "inclusive:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top // 2)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 40), end="")
