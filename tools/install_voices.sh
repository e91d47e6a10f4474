#!/usr/bin/env bash
# Installs the optional Debian packages that hold real recorded speech, for the RealVoices
# corpus (speechbrain_crossmamba/dataio/real_voices.py). Debian bookworm or newer, as root
# (or with sudo). The default training run works without any of them.
#
#   sudo bash tools/install_voices.sh            # all sources (contrib and non-free included)
#   sudo bash tools/install_voices.sh --free     # only the packages of Debian's main
#
# contrib/non-free are enabled through a PRIVATE sources list in a temporary folder: the
# system's own sources are not changed. The archive address and the release are read from the
# system's own sources (deb822 .sources or a one-line sources.list), never written down here.
set -euo pipefail

MAIN_PACKAGES="fillets-ng-data fillets-ng-data-cs fillets-ng-data-nl drascula flight-of-the-amazon-queen klettres-data ktuberling-data beneath-a-steel-sky"
NONFREE_PACKAGES="uqm-voice"   # non-free: CC BY-NC-SA 2.5, non-commercial use only

free_only=0
[[ "${1:-}" == "--free" ]] && free_only=1

sudo_cmd=""
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || { echo "install_voices.sh: run as root or install sudo" >&2; exit 2; }
    sudo_cmd="sudo"
fi
command -v apt-get >/dev/null || { echo "install_voices.sh: needs Debian's apt-get" >&2; exit 2; }

# The archive address and release of the system's first Debian source with component main.
read_source() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        awk '
            /^URIs:/ {u=$2} /^Suites:/ {s=$2}
            /^[[:space:]]*$/ { if (u != "" && u !~ /security/) {print u, s; exit} u=""; s="" }
            END { if (u != "" && u !~ /security/) print u, s }' "$f" | head -1
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        awk '$1 == "deb" && $0 !~ /security/ {
                 i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                 print $i, $(i+1); exit }' "$f"
    done
}
read -r archive release < <(read_source | head -1) || true
if [[ -z "${archive:-}" || -z "${release:-}" ]]; then
    echo "install_voices.sh: found no Debian archive in /etc/apt/sources.list(.d)" >&2
    exit 2
fi

if [[ "$free_only" == 1 ]]; then
    $sudo_cmd apt-get install -y $MAIN_PACKAGES
    exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/install_voices.XXXXXX")"
trap '$sudo_cmd rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb [signed-by=$keyring] $archive $release main contrib non-free" > "$work/voices.list"
APT=(-o "Dir::Etc::SourceList=$work/voices.list" -o "Dir::Etc::SourceParts=/dev/null"
     -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache")
$sudo_cmd apt-get "${APT[@]}" update
$sudo_cmd apt-get "${APT[@]}" install -y $MAIN_PACKAGES $NONFREE_PACKAGES
echo "installed: $MAIN_PACKAGES $NONFREE_PACKAGES"
