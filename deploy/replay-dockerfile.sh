#!/usr/bin/env bash
# Replays deploy/Dockerfile's steps as plain commands (CI has no container daemon or base images):
#
# build stage:   the files its COPY lines name go to a scratch /src, and its RUN line (read from
#                the Dockerfile itself, so the two cannot drift apart) runs there;
# runtime stage: the binary goes to a scratch /usr/local/bin, CA certificates must be present,
#                and `--version` and `--help` run as the image's unprivileged user (uid 10001)
#                from a scratch WORKDIR, as `docker run --rm ticketsync --version` would.
#
# The build reuses the repository's target directory (a symlink), so a second replay is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
dockerfile=deploy/Dockerfile
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

echo "-- build stage"
mkdir -p "$scratch/src"
# COPY <src>... <dest> of the build stage (up to the second FROM).
awk '/^FROM /{n++} n==1 && /^COPY /{print}' "$dockerfile" | while read -r _ rest; do
  # shellcheck disable=SC2206
  words=($rest)
  dest="${words[${#words[@]}-1]}"
  for src in "${words[@]:0:${#words[@]}-1}"; do
    target="$scratch/src/${dest#./}"
    [[ "$dest" == */ || "$dest" == "./" ]] && target="$scratch/src/${dest#./}$(basename "$src")"
    mkdir -p "$(dirname "$target")"
    cp -R "$repo/$src" "$target"
  done
done
# The build stage's RUN command, continuation lines joined.
run="$(awk '/^FROM /{n++} n==1' "$dockerfile" | sed -e ':a' -e '/\\$/N; s/\\\n//; ta' | sed -n 's/^RUN //p')"
[[ -n "$run" ]] || { echo "no RUN line in the build stage of $dockerfile"; exit 1; }
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
mkdir -p "$target_dir"
ln -s "$target_dir" "$scratch/src/target"
echo "RUN $run"
# The replay checks that the build stage's files and command produce a working binary, not
# what the optimizer makes of it: on CI (2 cores, a 40-minute budget, and a cold release build of
# polars and delta-rs takes over 15 minutes there) the command runs with the dev profile the
# tests already built (`--release` dropped, `target/release/` read as `target/debug/`).
# `docker build` runs the RUN line unchanged. TICKETSYNC_REPLAY_RELEASE=1 replays it as written.
profile=release
if [[ "${TICKETSYNC_REPLAY_RELEASE:-0}" != 1 ]]; then
  run="${run//--release/}"
  run="${run//target\/release\//target/debug/}"
  profile=debug
  echo "RUN (dev profile) $run"
fi
(cd "$scratch/src" && env -u CARGO_TARGET_DIR bash -ec "$run")

echo "-- runtime stage"
if ! [[ -s /etc/ssl/certs/ca-certificates.crt ]]; then
  echo "CA certificates missing (the image installs ca-certificates)"; exit 1
fi
grep -q 'apt-get install -y --no-install-recommends ca-certificates' "$dockerfile"
mkdir -p "$scratch/usr/local/bin" "$scratch/data"
cp "$scratch/src/target/$profile/ticketsync" "$scratch/usr/local/bin/ticketsync"
chmod 0755 "$scratch" "$scratch/usr" "$scratch/usr/local" "$scratch/usr/local/bin"
chmod 0777 "$scratch/data"
uid="$(sed -n 's/^USER \([0-9]*\):.*/\1/p' "$dockerfile")"
[[ "$uid" == 10001 ]] || { echo "the image's USER is not 10001"; exit 1; }
as_user=()
if [[ "$(id -u)" == 0 ]] && command -v setpriv > /dev/null; then
  as_user=(setpriv --reuid="$uid" --regid="$uid" --clear-groups --)
else
  echo "not root: running the binary as $(id -un) instead of uid $uid"
fi
version="$(cd "$scratch/data" && env -i "${as_user[@]}" "$scratch/usr/local/bin/ticketsync" --version)"
echo "$version"
[[ "$version" =~ ^ticketsync\ [0-9.]+\ \(dataset\ format\ [0-9]+\)$ ]] || { echo "unexpected --version"; exit 1; }
(cd "$scratch/data" && env -i "${as_user[@]}" "$scratch/usr/local/bin/ticketsync" --help > /dev/null)
echo "-- replayed: $(du -h "$scratch/usr/local/bin/ticketsync" | cut -f1) stripped binary"
