#!/usr/bin/env bash
# Run a command as the image's user (uid 10001) with the root filesystem read-only and
# a writable /tmp, as the chart's pod runs it (readOnlyRootFilesystem, an emptyDir at /tmp).
#
#   unshare --mount tests/read_only_root.sh VENV SRC -- command...
#
# In a private mount namespace (unshare --mount; needs root): / is bind-mounted read-only
# into a new root, /tmp there is an empty tmpfs, and VENV, SRC and the Python that VENV
# links to are bound back read-only at their own paths (they live under /tmp and /root).
set -euo pipefail

venv="$1"
src="$2"
shift 3
python_home="$(dirname "$(dirname "$(readlink -f "$venv/bin/python")")")"
root="$(mktemp -d)"
mount --rbind / "$root"
mount -o remount,bind,ro "$root"
mount -t tmpfs -o size=64m,mode=1777 tmpfs "$root/tmp"
mount -t tmpfs -o mode=755 tmpfs "$root/root"
for dir in "$venv" "$src" "$python_home"; do
  mkdir -p "$root$dir"
  mount --bind "$dir" "$root$dir"
  mount -o remount,bind,ro "$root$dir"
done
exec chroot "$root" setpriv --reuid=10001 --regid=10001 --clear-groups "$@"
