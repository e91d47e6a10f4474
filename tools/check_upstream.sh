#!/usr/bin/env bash
# Run SpeechBrain's own checks on our recipes as an upstream pull request would add them.
#
# Usage:
#   tools/check_upstream.sh [options] SPEECHBRAIN
#
#   SPEECHBRAIN       a speechbrain/speechbrain checkout, or a bare git dir, or a plain folder
#   --ref REF         the commit/branch to stage from a git SPEECHBRAIN (default: develop,
#                     where pull requests go; origin/REF is tried too)
#   --python PY       a Python with torch, speechbrain and this project installed
#                     (default: the `python` on PATH); it is never modified
#   --lint-venv DIR   a venv for the linters pinned in SpeechBrain's .pre-commit-config.yaml
#                     (ruff, yamllint, codespell, pre-commit-hooks); reused, and created or
#                     completed with pip when a pin is missing (default:
#                     ${XDG_CACHE_HOME:-~/.cache}/speechbrain-crossmamba/lintvenv)
#   --skip-runs       skip the recipe debug runs (the static checks take ~2 min)
#   --keep            keep the scratch folder (the staged SpeechBrain tree)
#
# Neither SPEECHBRAIN nor this project is modified: a scratch copy of SpeechBrain REF gets
#   recipes/{LibriMix,WSJ0Mix,FSDSoundScapes}/tse   our recipes (recipes/Libri2Mix/tse is taken
#                                                   while recipes/LibriMix does not exist yet)
#   tests/recipes/<Dataset>.csv                     + our rows, tools/upstream/tests_recipes/
#   tests/samples/TSE/<Dataset>                     tiny corpora, tools/upstream/make_samples.py
# and SpeechBrain's checks run there. One line per check: `PASS <check>` or
# `FAIL <check>: <reason> (log: <file>)`; lines starting with INFO are context. Exit status 1
# when a check fails. Logs are kept in a folder named at the end.
set -u -o pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT="$(cd "$HERE/.." && pwd)"
HELPER="$HERE/upstream/upstream_checks.py"
ROWS="$HERE/upstream/tests_recipes"
REF="develop"
PY=""
LINT="${XDG_CACHE_HOME:-$HOME/.cache}/speechbrain-crossmamba/lintvenv"
RUNS=1
KEEP=0
SB=""
while [ $# -gt 0 ]; do
    case "$1" in
        --ref) REF="$2"; shift 2 ;;
        --python) PY="$2"; shift 2 ;;
        --lint-venv) LINT="$2"; shift 2 ;;
        --skip-runs) RUNS=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
        *) SB="$1"; shift ;;
    esac
done
[ -n "$SB" ] || { echo "give the SpeechBrain checkout (see --help)" >&2; exit 2; }
[ -d "$SB" ] || { echo "no such folder: $SB" >&2; exit 2; }
SB="$(cd "$SB" && pwd)"
PY="$(command -v "${PY:-python}")" || { echo "no python: ${PY:-python}" >&2; exit 2; }
case "$PY" in /*) ;; *) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac
mkdir -p "$LINT" && LINT="$(cd "$LINT" && pwd)" || exit 2
VERSIONS="$("$PY" -c 'import speechbrain, speechbrain_crossmamba, torch
print("speechbrain", speechbrain.__version__, "torch", torch.__version__)' 2>&1 | tail -1)" \
    || { echo "$PY cannot import speechbrain_crossmamba, speechbrain and torch: $VERSIONS" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/check_upstream.XXXXXX")"
LOGS="$(mktemp -d "${TMPDIR:-/tmp}/check_upstream_logs.XXXXXX")"
SBT="$WORK/speechbrain"
cleanup() {
    if [ "$KEEP" = 0 ]; then rm -rf "$WORK"; fi
    rmdir "$LOGS" 2> /dev/null || true  # only when nothing ran
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export PYTHONDONTWRITEBYTECODE=1 OMP_NUM_THREADS=1
NICE=(nice -n 19)
T0=$SECONDS
NCHECKS=0
NFAILS=0

# ---- reporting ---------------------------------------------------------------------------
# check NAME CMD...: runs CMD in the staged tree, output to LOGS/NAME.log; prints PASS or FAIL
# with the reason from reason_NAME (when defined) or the log's last `REASON: ` / last line.
check() {
    local name="$1" log="$LOGS/$1.log" rc reason fn
    shift
    (cd "$SBT" && "$@") > "$log" 2>&1
    rc=$?
    NCHECKS=$((NCHECKS + 1))
    if [ "$rc" = 0 ]; then
        echo "PASS $name"
        return 0
    fi
    fn="reason_${name//-/_}"
    if declare -F "$fn" > /dev/null; then
        reason="$("$fn" "$log")"
    else
        reason="$(grep -E '^REASON: ' "$log" | tail -1 | cut -c9-)"
    fi
    [ -n "$reason" ] || reason="$(grep -v '^[[:space:]]*$' "$log" | tail -1 | cut -c1-200)"
    echo "FAIL $name: ${reason:-exit status $rc} (log: $log)"
    NFAILS=$((NFAILS + 1))
}
reason_consistency() {
    local failed
    failed="$(grep -E '^(FAILED|ERROR) ' "$1" | sed -E 's/^[A-Z]+ tests\/consistency\/([^ ]+).*/\1/' | paste -sd ' ')"
    echo "$(grep -E '[0-9]+ (failed|error)' "$1" | tail -1 | tr -d '=' | sed 's/^ *//'): $failed"
}
reason_linters() {
    local section
    section="$(grep -E '^===.*===$' "$1" | tail -1 | tr -d '=')"
    case "$section" in
        "Ruff Format") echo "ruff format would reformat:" \
            "$(sed -n 's#^Would reformat: ##p' "$1" | xargs -r -n1 basename | paste -sd ' ')" ;;
        "Ruff") echo "ruff check: $(grep -E '^Found [0-9]+ error' "$1" | tail -1)" ;;
        "Yamllint") echo "yamllint: $(grep -cE '^[[:space:]]+[0-9]+:[0-9]+[[:space:]]+error' "$1") errors" ;;
        *) echo "stopped in ${section:-setup}: $(tail -1 "$1")" ;;
    esac
}
reason_codespell() {
    echo "$(grep -c '==>' "$1") misspellings: $(grep -m1 '==>' "$1")"
}

# ---- staging -----------------------------------------------------------------------------
stage_speechbrain() {
    mkdir -p "$SBT"
    if [ "$(git --git-dir="$SB" rev-parse --is-bare-repository 2> /dev/null)" = "true" ]; then
        GIT=(git --git-dir="$SB")
    elif git -C "$SB" rev-parse --git-dir > /dev/null 2>&1; then
        GIT=(git -C "$SB")
    else
        SBREV="of unknown commit"
        REF="a plain folder: --ref ignored"
        cp -a "$SB/." "$SBT/" && rm -rf "$SBT/.git"
        return
    fi
    if ! SBREV="$("${GIT[@]}" rev-parse --verify -q "$REF^{commit}")"; then
        SBREV="$("${GIT[@]}" rev-parse --verify -q "origin/$REF^{commit}")" \
            || { echo "no ref $REF in $SB" >&2; exit 2; }
    fi
    "${GIT[@]}" archive "$SBREV" | tar -x -C "$SBT"
}
# copy_recipe SRC_DATASET DST_DATASET: the recipe's files that git tracks or would track.
copy_recipe() {
    local src="recipes/$1/tse" dest="$SBT/recipes/$2/tse" f
    if git -C "$PROJECT" rev-parse --git-dir > /dev/null 2>&1; then
        git -C "$PROJECT" ls-files -co --exclude-standard -- "$src"
    else
        (cd "$PROJECT" && find "$src" -type f ! -path '*__pycache__*' ! -path '*/results/*')
    fi | sort -u | while IFS= read -r f; do
        [ -f "$PROJECT/$f" ] || continue  # deleted but still in the index
        mkdir -p "$dest/$(dirname "${f#"$src"/}")"
        cp "$PROJECT/$f" "$dest/${f#"$src"/}"
    done
}
stage_recipes() {
    local libri=LibriMix
    [ -d "$PROJECT/recipes/LibriMix/tse" ] || libri=Libri2Mix
    copy_recipe "$libri" LibriMix
    copy_recipe WSJ0Mix WSJ0Mix
    copy_recipe FSDSoundScapes FSDSoundScapes
    echo "INFO recipes: recipes/$libri/tse -> recipes/LibriMix/tse, recipes/WSJ0Mix/tse," \
        "recipes/FSDSoundScapes/tse ($(find "$SBT"/recipes/*/tse -type f | wc -l) files)"
}
# Our files in the staged tree: what a pull request adds or changes.
OURS=(recipes/LibriMix/tse recipes/WSJ0Mix/tse recipes/FSDSoundScapes/tse tests/samples/TSE
      tests/recipes/LibriMix.csv tests/recipes/WSJ0Mix.csv tests/recipes/FSDSoundScapes.csv)

# ---- the steps ---------------------------------------------------------------------------
lint_venv() {
    local pins spec have need=()
    pins="$("$PY" "$HELPER" pins "$SBT/.pre-commit-config.yaml")" || return 1
    echo "pins: $pins"
    for spec in $pins; do
        have="$("$LINT/bin/python" -m pip show "${spec%%==*}" 2> /dev/null | sed -n 's/^Version: //p')"
        [ "$have" = "${spec#*==}" ] || need+=("$spec")
    done
    [ ${#need[@]} = 0 ] && return 0
    [ -x "$LINT/bin/python" ] || "$PY" -m venv "$LINT" || { echo "REASON: cannot create $LINT"; return 1; }
    "$LINT/bin/python" -m pip install -q "${need[@]}" || { echo "REASON: pip install ${need[*]} failed"; return 1; }
}
codespell_ours() {
    local args files
    mapfile -t args < <("$PY" "$HELPER" codespell-args .pre-commit-config.yaml)
    mapfile -t files < <(git ls-files -- "${OURS[@]}")
    "$LINT/bin/codespell" "${args[@]}" "${files[@]}"
}
# The pre-commit-hooks entries of SpeechBrain's .pre-commit-config.yaml on our files.
hooks_ours() {
    local all text py req failed=()
    mapfile -t all < <(git ls-files -- "${OURS[@]}")
    mapfile -t text < <(printf '%s\n' "${all[@]}" | xargs -r grep -Il '')
    mapfile -t py < <(printf '%s\n' "${all[@]}" | grep -E '\.py$')
    mapfile -t req < <(printf '%s\n' "${all[@]}" | grep -E 'requirements.*\.txt$')
    "$LINT/bin/trailing-whitespace-fixer" "${text[@]}" || failed+=(trailing-whitespace)
    "$LINT/bin/end-of-file-fixer" "${py[@]}" || failed+=(end-of-file-fixer)
    "$LINT/bin/requirements-txt-fixer" "${req[@]}" || failed+=(requirements-txt-fixer)
    "$LINT/bin/mixed-line-ending" --fix=no "${py[@]}" || failed+=(mixed-line-ending)
    "$LINT/bin/check-added-large-files" --maxkb=1024 "${all[@]}" || failed+=(check-added-large-files)
    [ ${#failed[@]} = 0 ] || { echo "REASON: ${failed[*]}"; return 1; }
}

listing() { (cd "$SBT" && find tests/samples/TSE -printf '%p %s %T@\n' | sort); }
samples_untouched() {
    local changed
    changed="$(listing | diff "$WORK/samples.before" - | grep -c '^>')"
    listing | diff "$WORK/samples.before" -
    [ "$changed" = 0 ] || { echo "REASON: the runs wrote $changed files or folders under tests/samples/TSE"; return 1; }
}

# ---- run ---------------------------------------------------------------------------------
stage_speechbrain
PREV="$(git -C "$PROJECT" describe --always --dirty 2> /dev/null || echo unknown)"
echo "INFO staged SpeechBrain $SBREV ($REF) from $SB; project $PROJECT at $PREV"
echo "INFO python: $PY ($VERSIONS)"
stage_recipes
check registry-rows "$PY" "$HELPER" add-rows "$ROWS"
check samples "${NICE[@]}" "$PY" "$HERE/upstream/make_samples.py" tests/samples/TSE
grep -q '^total' "$LOGS/samples.log" && echo "INFO samples: $(grep '^total' "$LOGS/samples.log")"
git -C "$SBT" init -q . && git -C "$SBT" add -A  # the linters list files with `git ls-files`
check lint-venv lint_venv
echo "INFO linters in $LINT: $(grep '^pins' "$LOGS/lint-venv.log" | cut -c7-)"
check consistency "${NICE[@]}" "$PY" -m pytest tests/consistency -q -p no:cacheprovider
check load-yaml "${NICE[@]}" "$PY" "$HELPER" load-yaml "$ROWS"
check linters env PATH="$LINT/bin:$PATH" bash tests/.run-linters.sh
check codespell codespell_ours
check pre-commit-hooks hooks_ours
if [ "$RUNS" = 1 ]; then
    # The runner calls `python` from PATH: make it PY (a wrapper, not a link: a venv's python
    # finds its venv from the path it is called by).
    mkdir -p "$WORK/bin" && printf '#!/bin/sh\nexec "%s" "$@"\n' "$PY" > "$WORK/bin/python"
    chmod +x "$WORK/bin/python"
    LOG="$LOGS/recipe-debug.log"
    listing > "$WORK/samples.before"
    (cd "$SBT" && PATH="$WORK/bin:$PATH" "${NICE[@]}" "$PY" "$HELPER" recipe-tests "$ROWS" tests/tmp/ "$LOGS") > "$LOG" 2>&1
    LINES="$(grep -E '^(PASS|FAIL) recipe-debug ' "$LOG")"
    if [ -z "$LINES" ]; then
        LINES="FAIL recipe-debug: the runner stopped: $(tail -1 "$LOG" | cut -c1-200) (log: $LOG)"
    fi
    echo "$LINES"
    NCHECKS=$((NCHECKS + $(echo "$LINES" | wc -l)))
    NFAILS=$((NFAILS + $(echo "$LINES" | grep -c '^FAIL')))
    # The runs must only read the samples (an upstream test run leaves tests/samples clean).
    check samples-untouched samples_untouched
fi
echo "INFO $NCHECKS checks, $NFAILS failed, $((SECONDS - T0)) s; logs: $LOGS;" \
    "scratch $([ "$KEEP" = 1 ] && echo "kept: $WORK" || echo removed)"
[ "$NFAILS" = 0 ]
