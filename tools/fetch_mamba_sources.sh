#!/usr/bin/env bash
# Fetches the Python sources of mamba-ssm and causal-conv1d, and einops (which mamba-ssm
# imports), into DIR (default .cache/mamba-sources, gitignored) for
# tests/test_mamba_ssm_conformance.py, which holds our scan, conv and MambaMixer against their
# pure-PyTorch references. That test finds the default folder by itself; for another DIR, set
# SB_CROSSMAMBA_MAMBA_SOURCES=DIR.
#
#   tools/fetch_mamba_sources.sh [DIR]
#
# Nothing is built or installed: pip downloads the two sdists (pinned and hash-checked) and the
# einops wheel, and Python unpacks them. To download an sdist, pip still prepares its metadata,
# which runs its setup.py: that imports torch (run this in the project's environment), setuptools,
# wheel and packaging (installed into a temporary folder here, put on PYTHONPATH for that step
# only), and *_SKIP_CUDA_BUILD=TRUE keeps it from compiling anything. Run again, it does nothing
# when DIR already holds these versions.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

MAMBA_SSM=2.3.2.post1
MAMBA_SSM_SHA256=104cc47e9101e5401a675fa2b784f2952b9b037f3b1dd83b5ac544394e95d028
CAUSAL_CONV1D=1.7.0
CAUSAL_CONV1D_SHA256=3202758494eaa7b597ce1c282dfa188889506bfcb92cad3c407d26736bfcd32b
EINOPS=0.8.2
BUILD_DEPS=(setuptools==80.9.0 wheel==0.46.3 packaging==26.3)

dest="${1:-$repo/.cache/mamba-sources}"
wanted=("mamba_ssm-$MAMBA_SSM/mamba_ssm" "causal_conv1d-$CAUSAL_CONV1D/causal_conv1d"
        "einops-$EINOPS/einops")
missing=0
for pkg in "${wanted[@]}"; do
    [[ -f "$dest/$pkg/__init__.py" ]] || missing=1
done
if [[ $missing == 0 ]]; then
    echo "fetch_mamba_sources: $dest already holds mamba-ssm $MAMBA_SSM, causal-conv1d $CAUSAL_CONV1D, einops $EINOPS"
    exit 0
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/mamba-sources.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
python -c "import torch" 2>/dev/null || {
    echo "fetch_mamba_sources: torch must import (the sdists' setup.py imports it): run this in the project's environment" >&2
    exit 1
}
cat >"$tmp/sdists.txt" <<EOF
mamba-ssm==$MAMBA_SSM --hash=sha256:$MAMBA_SSM_SHA256
causal-conv1d==$CAUSAL_CONV1D --hash=sha256:$CAUSAL_CONV1D_SHA256
EOF
python -m pip install --quiet --target "$tmp/build-deps" "${BUILD_DEPS[@]}"
PYTHONPATH="$tmp/build-deps${PYTHONPATH:+:$PYTHONPATH}" \
    MAMBA_SKIP_CUDA_BUILD=TRUE CAUSAL_CONV1D_SKIP_CUDA_BUILD=TRUE \
    python -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
    -r "$tmp/sdists.txt" -d "$tmp/download"
python -m pip download --quiet --no-deps --only-binary :all: "einops==$EINOPS" \
    -d "$tmp/download"

mkdir -p "$dest"
python - "$tmp/download" "$dest" <<'EOF'
"""Unpacks the sdists (each into its own NAME-VERSION folder) and the wheel (into one named
like them), refusing members that would land outside DEST."""
import sys
import tarfile
import zipfile
from pathlib import Path

download, dest = Path(sys.argv[1]), Path(sys.argv[2]).resolve()


def inside(root, name):
    target = (root / name).resolve()
    if target != root and root not in target.parents:
        sys.exit(f"fetch_mamba_sources: {name!r} would unpack outside {root}")
    return name


for archive in sorted(download.iterdir()):
    if archive.name.endswith(".tar.gz"):
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]
            for m in members:
                inside(dest, m.name)
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(dest, members=members, **safe)
    elif archive.suffix == ".whl":
        project, version = archive.name.split("-")[:2]
        root = (dest / f"{project}-{version}").resolve()
        with zipfile.ZipFile(archive) as whl:
            for member in whl.namelist():
                inside(root, member)
            whl.extractall(root)
    else:
        sys.exit(f"fetch_mamba_sources: unexpected download {archive.name}")
    print(f"fetch_mamba_sources: unpacked {archive.name} into {dest}")
EOF
