#!/usr/bin/env bash
# Runs the shell examples of README.md and docs/*.md, so that no page lies.
#
# A ```sh block is run when HTML comments directly above it (one a line, no
# blank line between them and the fence) say so:
#
#   <!-- runnable -->                   run it
#   <!-- expect: EXTENDED REGEX -->     a line of its output (standard output
#                                       and error together) must match; any
#                                       number of these
#   <!-- expect-md5: HEX -->            the md5 of its standard output
#   <!-- needs: TOOL -->                skipped (counted and named) when TOOL
#                                       is not on the PATH
#   <!-- not-run: REASON -->            never run here (too long, or a
#                                       placeholder path); counted, with the
#                                       reason
#
# Every ```sh block must carry `runnable` or `not-run`. Each runnable block
# runs from the repository root, in a fresh `bash` with `set -euo pipefail`,
# and passes when it exits 0 and its output matches. It must not leave files
# in the working tree (git status is compared before and after).
#
# Also checked: README.md has at most 250 lines; the relative links (and
# their #anchors) of README.md, docs/*.md and examples/**/README.md resolve;
# no page names a path of the machine it runs on (the folder holding this
# checkout, or the checkout itself when that folder is /tmp or the like, or
# the home directory).
#
#   bash tests/docs/run.sh              every page
#   bash tests/docs/run.sh FILE.md...   only these pages' blocks
#   bash tests/docs/run.sh --self-test  shows that a wrong block fails the run
#
# Prints `docs: N run, P passed, F failed, S skipped (…), X not run (…)`.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

if [ "${1:-}" = --self-test ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  cat >"$tmp/page.md" <<'PAGE'
<!-- runnable -->
<!-- expect: ^hello$ -->
```sh
echo hello
```

<!-- runnable -->
<!-- expect: ^2 alerts$ -->
```sh
echo "3 alerts"
```

<!-- runnable -->
```sh
false
echo unreachable
```

<!-- runnable -->
<!-- expect-md5: 00000000000000000000000000000000 -->
```sh
echo hello
```

<!-- runnable -->
<!-- needs: no-such-tool-here -->
```sh
no-such-tool-here --version
```
PAGE
  if out=$(bash "$0" "$tmp/page.md" 2>&1); then
    echo "$out"
    echo "docs self-test: FAILED (the wrong blocks passed)" >&2
    exit 1
  fi
  echo "$out" | grep -q '^docs: 4 run, 1 passed, 3 failed, 1 skipped (no-such-tool-here: 1), 0 not run' || {
    echo "$out"
    echo "docs self-test: FAILED (unexpected totals)" >&2
    exit 1
  }
  echo "docs self-test: a wrong output, a failing command and a wrong md5 each fail the run"
  exit 0
fi

explicit=$#
if [ $# -gt 0 ]; then pages=("$@"); else pages=(README.md docs/*.md); fi

fail=0
problem() { echo "FAIL: $*"; fail=1; }

if [ "$explicit" = 0 ]; then
  lines=$(wc -l <README.md)
  [ "$lines" -le 250 ] || problem "README.md has $lines lines (at most 250)"
  echo "README.md: $lines lines"
  # The machine's own paths, found at run time: the folder holding this
  # checkout (unless it is a shared one such as /tmp, which pages name in
  # examples), and the home directory (when it is not the root).
  machine=()
  parent=$(dirname "$(pwd -P)")
  case "$parent" in /|/tmp|/var/tmp) machine+=("$(pwd -P)/") ;; *) machine+=("$parent/") ;; esac
  [ -n "${HOME:-}" ] && [ "$HOME" != / ] && machine+=("${HOME%/}/")
  for m in "${machine[@]}"; do
    if grep -nF -- "$m" README.md docs/*.md examples/*/README.md examples/*/*.conf \
        examples/*/*.yaml examples/*/*.lua examples/go/go.mod; then
      problem "a path of this machine ($m) in a page"
    fi
  done
  # Relative links and anchors (GitHub's heading slugs).
  python3 - README.md docs/*.md examples/*/README.md <<'PY' || fail=1
import os, re, sys
def slugs(path):
    out, seen, fence = set(), {}, False
    for line in open(path, encoding="utf-8"):
        if line.startswith("```"):
            fence = not fence
        if fence or not line.startswith("#"):
            continue
        text = line.lstrip("#").strip()
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
        s = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out
bad = 0
for page in sys.argv[1:]:
    fence = False
    for no, line in enumerate(open(page, encoding="utf-8"), 1):
        if line.startswith("```"):
            fence = not fence
        if fence:
            continue
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            if not os.path.exists(dest):
                print(f"FAIL: {page}:{no}: link to a missing file: {target}")
                bad += 1
            elif anchor and dest.endswith(".md") and anchor not in slugs(dest):
                print(f"FAIL: {page}:{no}: link to a missing heading: {target}")
                bad += 1
print(f"links: {'all resolve' if not bad else f'{bad} broken'}")
sys.exit(1 if bad else 0)
PY
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Split the pages into blocks: $work/N.sh (the code) and $work/N.meta (one
# `key value` a line: page, line, runnable, expect, md5, needs, notrun).
python3 - "$work" "${pages[@]}" <<'PY'
import re, sys
work, pages = sys.argv[1], sys.argv[2:]
n = 0
for page in pages:
    lines = open(page, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            lang = line[3:].strip()
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            if lang == "sh":
                meta = []
                k = i - 1
                while k >= 0 and re.match(r"\s*<!--.*-->\s*$", lines[k]):
                    meta.insert(0, re.match(r"\s*<!--\s*(.*?)\s*-->", lines[k]).group(1))
                    k -= 1
                n += 1
                with open(f"{work}/{n:03}.sh", "w") as f:
                    f.write("\n".join(lines[i + 1:j]) + "\n")
                with open(f"{work}/{n:03}.meta", "w") as f:
                    f.write(f"page {page}\nline {i + 1}\n")
                    for m in meta:
                        key, _, value = m.partition(":")
                        f.write(f"{key.strip()} {value.strip()}\n")
            i = j + 1
        else:
            i += 1
PY

# A fresh environment: only what finds the tools.
keep=(HOME="$HOME" PATH="$PATH" TERM=dumb)
for v in USER CARGO_HOME RUSTUP_HOME RUSTUP_TOOLCHAIN GOCACHE GOPATH; do
  [ -z "${!v:-}" ] || keep+=("$v=${!v}")
done
before=$(git status --porcelain --untracked-files=all)
run=0 passed=0 failed=0 skipped=0 notrun=0
declare -A missing=()
notrun_list=()
for code in "$work"/*.sh; do
  [ -e "$code" ] || break
  meta="${code%.sh}.meta"
  page=$(sed -n 's/^page //p' "$meta")
  line=$(sed -n 's/^line //p' "$meta")
  where="$page:$line"
  if grep -q '^not-run' "$meta"; then
    notrun=$((notrun + 1))
    notrun_list+=("$where ($(sed -n 's/^not-run //p' "$meta"))")
    continue
  fi
  if ! grep -q '^runnable' "$meta"; then
    problem "$where: a \`\`\`sh block without <!-- runnable --> or <!-- not-run: why -->"
    continue
  fi
  absent=""
  while read -r tool; do
    command -v "$tool" >/dev/null || absent="$tool"
  done < <(sed -n 's/^needs //p' "$meta")
  if [ -n "$absent" ]; then
    skipped=$((skipped + 1))
    missing[$absent]=$((${missing[$absent]:-0} + 1))
    echo "skip $where: needs $absent"
    continue
  fi
  run=$((run + 1))
  out="$work/out" err="$work/err"
  status=0
  (cd "$root" && timeout 900 env -i "${keep[@]}" \
    bash --noprofile --norc -c "set -euo pipefail; $(cat "$code")") >"$out" 2>"$err" </dev/null || status=$?
  ok=1 why=""
  [ "$status" = 0 ] || { ok=0; why="exit status $status"; }
  while IFS= read -r re; do
    # (grep reads the files itself: `cat … | grep -q` under pipefail fails
    # when grep stops early and cat gets SIGPIPE.)
    grep -Eq -- "$re" "$out" "$err" || { ok=0; why="${why:+$why; }no line matches /$re/"; }
  done < <(sed -n 's/^expect //p' "$meta")
  want=$(sed -n 's/^expect-md5 //p' "$meta")
  if [ -n "$want" ]; then
    got=$(md5sum <"$out" | cut -d' ' -f1)
    [ "$got" = "$want" ] || { ok=0; why="${why:+$why; }stdout md5 $got, expected $want"; }
  fi
  if [ "$ok" = 1 ]; then
    passed=$((passed + 1))
    echo "ok   $where"
  else
    failed=$((failed + 1))
    echo "FAIL $where: $why"
    sed 's/^/     | /' "$code"
    echo "     standard output (last lines):"; tail -n 8 "$out" | cut -c1-300 | sed 's/^/     > /'
    echo "     standard error (last lines):"; tail -n 8 "$err" | cut -c1-300 | sed 's/^/     > /'
  fi
done
after=$(git status --porcelain --untracked-files=all)
if [ "$explicit" = 0 ] && [ "$before" != "$after" ]; then
  problem "the examples changed the working tree:"
  diff <(echo "$before") <(echo "$after") || true
fi

skips=""
for t in "${!missing[@]}"; do skips="${skips:+$skips, }$t: ${missing[$t]}"; done
for n in "${notrun_list[@]}"; do echo "not run: $n"; done
echo "docs: $run run, $passed passed, $failed failed, $skipped skipped (${skips:-none missing}), $notrun not run"
[ "$failed" = 0 ] || fail=1
if [ "$explicit" = 0 ]; then
  bash "$0" --self-test || fail=1
fi
exit "$fail"
