#!/usr/bin/env bash
# Snakemake resolves `--profile NAME` in ./NAME, ~/.config/snakemake/NAME and
# /etc/xdg/snakemake/NAME, not in ./profiles. Link this project's profiles into
# ~/.config/snakemake so that `snakemake --profile local` and `--profile slurm` work,
# without ever replacing a profile of the user's own.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest="${XDG_CONFIG_HOME:-$HOME/.config}/snakemake"
mkdir -p "$dest"
for name in local slurm; do
  src="$here/profiles/$name"
  link="$dest/$name"
  if [ -L "$link" ] && [ "$(readlink "$link")" = "$src" ]; then
    continue
  elif [ -L "$link" ] && [ ! -e "$link" ]; then
    ln -sfn "$src" "$link"  # a dangling link, e.g. from a deleted clone of this project
    echo "re-registered profile '$name' -> $src"
  elif [ -e "$link" ]; then
    echo "note: kept your own $link; use --profile $src for this project's '$name' profile" >&2
  else
    ln -s "$src" "$link"
    echo "registered profile '$name' -> $src"
  fi
done
