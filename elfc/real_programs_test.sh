#!/usr/bin/env bash
# Real programs from Debian under LD_PRELOAD=libelfc.so, with output identical
# to glibc's (the sh_test //elfc:real_programs_test).
#
#   real_programs_test.sh LIBRARY [PROGRAM...]
#
# Each workload runs twice in fresh directories: first on glibc's malloc,
# then with LD_PRELOAD=LIBRARY (inherited by every process the program
# starts: git's helpers, g++'s cc1plus, python's subprocesses). Standard
# output, standard error and the exit status must be identical, and must be
# a success. The elfc run also has LD_DEBUG=bindings (written to files, not
# to the program's output), which proves the preload really served each
# process: every process must bind `malloc` to LIBRARY, and no process may
# bind any allocation function (malloc, free, calloc, realloc, reallocarray,
# posix_memalign, aligned_alloc, memalign, valloc, pvalloc,
# malloc_usable_size) to glibc — that would mix two heaps.
#
# Workloads (PROGRAM names; all by default):
#   python3  /usr/bin/python3: dicts and lists built and sorted, a JSON round
#            trip, regular expressions, 8 threads, big bytes objects, gc, a
#            subprocess
#   perl     hashes, sorting, regular expressions over a 100k-word string
#   git      init, 12 commits of 150 files, log --stat, diff, grep, gc,
#            fsck, count-objects
#   sort     sort -n, -k2,2 -k1,1nr, -u, and an external merge (-S 1M with
#            temporary files, --parallel=2) of 100k generated lines
#   sqlite3  10k INSERTs in one transaction, two indexes, aggregates,
#            integrity_check, VACUUM
#   g++      g++ -O2 -S of a C++ file using <map>, <string>, <vector>,
#            <algorithm> (the assembly must be byte-identical)
#   java     a Java program (collections, strings, 4 threads) run from
#            source; the JVM is one of the hardest malloc users there is
# A program that is not installed is reported "SKIPPED: <program> not
# installed" and does not fail the test; every one of them is installed on
# the project's CI image.
#
# Environment: ELFC_TEST_PRELOAD=/path/lib.so runs against another malloc
# (then only malloc/free/calloc/realloc must bind to it: peers such as
# jemalloc leave reallocarray/pvalloc to glibc).
set -uo pipefail

[ $# -ge 1 ] || { echo "usage: $0 LIBRARY [PROGRAM...]"; exit 2; }
abs() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
lib=$(abs "$1")
shift
strict=1
if [ -n "${ELFC_TEST_PRELOAD:-}" ]; then
  echo "ELFC_TEST_PRELOAD overrides the library: $ELFC_TEST_PRELOAD"
  lib=$ELFC_TEST_PRELOAD
  strict=0
fi
[ -f "$lib" ] || { echo "FAIL: library $lib not found"; exit 1; }
programs=("$@")
[ ${#programs[@]} -gt 0 ] || programs=(python3 perl git sort sqlite3 g++ java)

work=${TEST_TMPDIR:-$(mktemp -d)}/real_programs
rm -rf "$work"
mkdir -p "$work"
export LC_ALL=C TZ=UTC
unset PYTHONPATH PYTHONHOME PERL5LIB

failed=()
passed=()
skipped=()

# ---- Workloads: `workload_<name> DIR` runs in DIR and prints to stdout. ----
# $RUN prefixes every program invocation: empty on glibc, `env LD_PRELOAD=...
# LD_DEBUG=...` in the elfc run. Helpers (printf, seq, cat) run unprefixed.

workload_python3() {
  cat > "$1/w.py" <<'EOF'
import collections, gc, hashlib, json, random, re, subprocess, threading
random.seed(12345)
d = {}
for i in range(200000):
    d.setdefault("key%d" % random.randrange(100000), []).append(i)
ranked = sorted(d.items(), key=lambda kv: (len(kv[1]), kv[0]))
print(len(d), ranked[0][0], ranked[-1][0], sum(len(v) for v in d.values()))
floats = [random.random() for _ in range(300000)]
floats.sort()
print("%.12f %.12f" % (floats[0], floats[-1]))
obj = {"items": [{"id": i, "name": "n%d" % i, "tags": ["t%d" % (i % 7)] * (i % 5),
                  "v": i * 0.5} for i in range(50000)]}
text = json.dumps(obj, sort_keys=True)
assert json.loads(text) == obj
print(len(text), hashlib.sha256(text.encode()).hexdigest())
words = " ".join("word%d-%s" % (i, "abc"[i % 3] * (i % 11)) for i in range(100000))
found = re.findall(r"word(\d+)-(a+|b+|c+)\b", words)
print(len(found), found[:3], found[-1])
print(sorted(collections.Counter(m[1][0] for m in found).items()))
results = [None] * 8
def work(i):
    r = random.Random(i)
    acc = [str(r.random()) * (1 + r.randrange(4)) for _ in range(20000)]
    results[i] = hashlib.md5("".join(sorted(acc)).encode()).hexdigest()
threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(results)
blobs = [bytes([i % 256]) * (i * 1000) for i in range(300)]
print(sum(map(len, blobs)))
del blobs
gc.collect()
out = subprocess.run(["/usr/bin/sort", "-r"], input="b\na\nc\n", capture_output=True, text=True)
print(repr(out.stdout), out.returncode)
print("python3 workload done")
EOF
  (cd "$1" && $RUN /usr/bin/python3 -E -s w.py)
}

workload_perl() {
  cat > "$1/w.pl" <<'EOF'
use strict; use warnings;
my (%h, %groups);
for my $i (1 .. 200000) {
  my $k = "k" . (($i * 7919) % 50000);
  $h{$k} .= "x";
  push @{ $groups{$i % 97} }, $i;
}
my $n = grep { /^k\d*7$/ } keys %h;
my @s = sort { length($h{$b}) <=> length($h{$a}) || $a cmp $b } keys %h;
print scalar(keys %h), " $n $s[0] $s[-1] ", scalar(@{ $groups{5} }), "\n";
my $t = join(" ", map { "w$_" . ("ab" x ($_ % 9)) } 1 .. 100000);
my @m = ($t =~ /w(\d+)((?:ab){3,})/g);
print scalar(@m), " $m[0] $m[-1]\n";
my %c; $c{length $_}++ for @m;
print join(",", map { "$_=$c{$_}" } sort { $a <=> $b } keys %c), "\n";
(my $u = $t) =~ s/(ab)+/<$&>/g;
print length($u), "\n";
print "perl workload done\n";
EOF
  (cd "$1" && $RUN /usr/bin/perl w.pl)
}

workload_git() {
  local dir=$1
  (
    # Fixed identity, dates and config: commit ids are the same in both runs.
    export HOME="$dir/home" GIT_CONFIG_NOSYSTEM=1
    export GIT_AUTHOR_NAME=elfc GIT_AUTHOR_EMAIL=elfc@example.com
    export GIT_COMMITTER_NAME=elfc GIT_COMMITTER_EMAIL=elfc@example.com
    export GIT_AUTHOR_DATE="2026-11-24T00:00:00Z" GIT_COMMITTER_DATE="2026-11-24T00:00:00Z"
    mkdir -p "$HOME"
    cd "$dir" || exit 1
    $RUN git init -q -b main repo || exit 1
    cd repo || exit 1
    # No background gc/maintenance: nothing may outlive the workload.
    $RUN git config gc.auto 0
    $RUN git config maintenance.auto false
    $RUN git config pack.threads 1
    for c in $(seq 1 12); do
      # Commit 1 writes 150 files in 10 directories; later ones rewrite a
      # quarter of them (growing). One awk per commit, unpreloaded.
      awk -v c="$c" 'BEGIN {
        for (f = 1; f <= 150; f++) {
          if ((f + c) % 4 != 0 && c != 1) continue
          d = "d" (f % 10); system("mkdir -p " d); out = d "/f" f ".txt"
          for (i = f; i <= f * c + 40; i++) print i " line of file " f " in commit " c > out
          close(out)
        }
      }' || exit 1
      $RUN git add -A || exit 1
      $RUN git commit -q -m "commit $c" || exit 1
    done
    $RUN git log --stat --format='%H %s'
    $RUN git diff --stat HEAD~6 HEAD
    $RUN git grep -c "line of file 7 " HEAD~3
    $RUN git gc -q || exit 1
    $RUN git fsck --strict --no-progress || exit 1
    $RUN git count-objects -v
    $RUN git rev-list --all --objects | wc -l
  )
}

workload_sort() {
  local dir=$1
  /usr/bin/python3 -E -s - "$dir/in.txt" <<'EOF'
import random, sys
r = random.Random(7)
with open(sys.argv[1], "w") as f:
    for i in range(100000):
        f.write("%d %s %d\n" % (r.randrange(1000000), "abcdefghij"[r.randrange(10)] * (1 + r.randrange(5)), i))
EOF
  mkdir -p "$dir/tmp"
  $RUN sort -n "$dir/in.txt" | md5sum
  $RUN sort -k2,2 -k1,1nr "$dir/in.txt" | md5sum
  $RUN sort -u -k2,2 "$dir/in.txt"
  $RUN sort -S 1M --parallel=2 -T "$dir/tmp" -k3,3nr "$dir/in.txt" | md5sum
  $RUN sort -n "$dir/in.txt" | sed -n 1,3p
}

workload_sqlite3() {
  local dir=$1
  {
    echo "CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, v REAL);"
    echo "BEGIN;"
    /usr/bin/python3 -E -s -c '
for x in range(1, 10001):
    print("INSERT INTO t(grp, name, v) VALUES (%d, %s, %r);" % (x % 37, "\x27name%d\x27" % (x * 7919 % 10007), (x * 31 % 1000) / 8.0))'
    echo "COMMIT;"
    cat <<'EOF'
CREATE INDEX t_grp ON t(grp);
CREATE INDEX t_name ON t(name);
SELECT count(*), sum(grp), printf('%.4f', avg(v)) FROM t;
SELECT grp, count(*), printf('%.3f', sum(v)), min(name), max(name) FROM t GROUP BY grp ORDER BY grp;
SELECT name, count(*) AS c FROM t GROUP BY name HAVING c > 1 ORDER BY c DESC, name LIMIT 10;
SELECT group_concat(id) FROM (SELECT id FROM t WHERE grp = 5 ORDER BY v DESC, id LIMIT 20);
UPDATE t SET name = name || '-' || grp WHERE id % 3 = 0;
DELETE FROM t WHERE id % 5 = 0;
SELECT count(*), count(DISTINCT name) FROM t;
PRAGMA integrity_check;
VACUUM;
SELECT count(*) FROM t WHERE name LIKE 'name1%';
EOF
  } > "$dir/w.sql"
  $RUN sqlite3 -batch "$dir/db.sqlite" < "$dir/w.sql"
}

workload_g++() {
  local dir=$1
  cat > "$dir/w.cc" <<'EOF'
#include <algorithm>
#include <map>
#include <string>
#include <vector>
std::map<std::string, std::vector<int>> Index(const std::vector<std::string>& words) {
  std::map<std::string, std::vector<int>> index;
  for (int i = 0; i < static_cast<int>(words.size()); ++i) index[words[i]].push_back(i);
  return index;
}
std::vector<std::string> TopWords(const std::map<std::string, std::vector<int>>& index, size_t n) {
  std::vector<std::pair<size_t, std::string>> counts;
  for (const auto& [word, where] : index) counts.emplace_back(where.size(), word);
  std::sort(counts.rbegin(), counts.rend());
  std::vector<std::string> out;
  for (size_t i = 0; i < n && i < counts.size(); ++i) out.push_back(counts[i].second);
  return out;
}
EOF
  (cd "$dir" && $RUN g++ -std=c++20 -O2 -frandom-seed=elfc -S -o w.s w.cc) || return 1
  md5sum < "$dir/w.s"
}

workload_java() {
  local dir=$1
  cat > "$dir/W.java" <<'EOF'
import java.util.*;
import java.util.concurrent.*;
public class W {
  public static void main(String[] args) throws Exception {
    Map<String, List<Integer>> m = new TreeMap<>();
    for (int i = 0; i < 200000; i++) m.computeIfAbsent("k" + (i * 7919 % 50000), k -> new ArrayList<>()).add(i);
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < 50000; i++) sb.append("w").append(i).append(i % 3 == 0 ? "ab" : "c").append(' ');
    String[] words = sb.toString().split(" ");
    Arrays.sort(words);
    ExecutorService pool = Executors.newFixedThreadPool(4);
    List<Future<Long>> fs = new ArrayList<>();
    for (int t = 0; t < 4; t++) {
      final int seed = t;
      fs.add(pool.submit(() -> {
        Random r = new Random(seed);
        long acc = 0;
        for (int i = 0; i < 100000; i++) acc += Integer.toString(r.nextInt()).hashCode();
        return acc;
      }));
    }
    long total = 0;
    for (Future<Long> f : fs) total += f.get();
    pool.shutdown();
    System.out.println(m.size() + " " + words[0] + " " + words[words.length - 1] + " " + total);
    System.out.println("java workload done");
  }
}
EOF
  # -Xshare:off: no class-data-sharing archive mapped differently per run;
  # a fixed heap so the JVM's own sizing does not depend on the run;
  # -XX:-UsePerfData: no hsperfdata files in the shared /tmp.
  (cd "$dir" && $RUN java -Xshare:off -Xmx256m -XX:+UseSerialGC -XX:-UsePerfData W.java)
}

# Absolute path of the program a workload needs (for the skip check).
program_path() {
  case "$1" in
    python3) echo /usr/bin/python3 ;;
    perl) echo /usr/bin/perl ;;
    *) command -v "$1" ;;
  esac
}

# ---- Checks ----

alloc_symbols="malloc|free|calloc|realloc"
[ "$strict" -eq 1 ] && alloc_symbols="malloc|free|calloc|realloc|reallocarray|posix_memalign|aligned_alloc|memalign|valloc|pvalloc|malloc_usable_size"

# Every process of the elfc run (one LD_DEBUG file each) bound malloc to the
# library, and none bound an allocation function to glibc.
check_bindings() {
  local name=$1 lddir=$2 files n_ok=0 bad=0 f
  files=("$lddir"/ld.*)
  if [ ! -e "${files[0]}" ]; then
    echo "FAIL $name: no LD_DEBUG output: the program never started under the preload?"
    return 1
  fi
  for f in "${files[@]}"; do
    if grep -qF " to $lib [0]: normal symbol \`malloc'" "$f"; then
      n_ok=$((n_ok + 1))
    else
      echo "FAIL $name: process $(basename "$f") did not bind malloc to $lib:"
      grep -m3 "normal symbol \`malloc'" "$f" | sed 's/^/    /'
      bad=1
    fi
    if grep -qE " to [^ ]*/libc\.so\.6 \[0\]: normal symbol \`($alloc_symbols)'" "$f"; then
      echo "FAIL $name: process $(basename "$f") bound allocation functions to glibc (two heaps in one process):"
      grep -m5 -E " to [^ ]*/libc\.so\.6 \[0\]: normal symbol \`($alloc_symbols)'" "$f" | sed 's/^/    /'
      bad=1
    fi
  done
  echo "  $name: $n_ok of ${#files[@]} processes had malloc from $(basename "$lib")"
  return $bad
}

run_program() {
  local name=$1 path
  path=$(program_path "$name")
  if [ -z "$path" ] || [ ! -x "$path" ]; then
    echo "SKIPPED: $name not installed"
    skipped+=("$name")
    return
  fi
  local base="$work/$name"
  mkdir -p "$base/glibc" "$base/elfc" "$base/ld"
  local t0 t1 t2 rc_glibc rc_elfc
  t0=$(date +%s%N)
  RUN="" "workload_$name" "$base/glibc" > "$base/glibc.out" 2> "$base/glibc.err"
  rc_glibc=$?
  t1=$(date +%s%N)
  RUN="env LD_PRELOAD=$lib LD_DEBUG=bindings LD_DEBUG_OUTPUT=$base/ld/ld" \
    "workload_$name" "$base/elfc" > "$base/elfc.out" 2> "$base/elfc.err"
  rc_elfc=$?
  t2=$(date +%s%N)
  # The directory name differs between the two runs; nothing else may.
  sed -i "s|$base/glibc|DIR|g" "$base/glibc.out" "$base/glibc.err"
  sed -i "s|$base/elfc|DIR|g" "$base/elfc.out" "$base/elfc.err"
  local ok=1
  if [ "$rc_glibc" -ne 0 ]; then
    echo "FAIL $name: the glibc run itself failed (status $rc_glibc): the workload is broken"
    sed 's/^/    /' "$base/glibc.err" | tail -20
    ok=0
  fi
  if [ "$rc_elfc" -ne "$rc_glibc" ]; then
    echo "FAIL $name: exit status $rc_elfc under the preload, $rc_glibc under glibc"
    ok=0
  fi
  if ! cmp -s "$base/glibc.out" "$base/elfc.out"; then
    echo "FAIL $name: standard output differs (- glibc, + preload):"
    diff -u "$base/glibc.out" "$base/elfc.out" | head -40 | sed 's/^/    /'
    ok=0
  fi
  if ! cmp -s "$base/glibc.err" "$base/elfc.err"; then
    echo "FAIL $name: standard error differs (- glibc, + preload):"
    diff -u "$base/glibc.err" "$base/elfc.err" | head -40 | sed 's/^/    /'
    ok=0
  fi
  check_bindings "$name" "$base/ld" || ok=0
  echo "  $name: glibc $(( (t1 - t0) / 1000000 )) ms, preload $(( (t2 - t1) / 1000000 )) ms" \
    "(with LD_DEBUG), $(wc -l < "$base/glibc.out") output lines"
  if [ "$ok" -eq 1 ]; then
    echo "ok   $name"
    passed+=("$name")
  else
    failed+=("$name")
  fi
}

echo "Library: $lib"
for p in "${programs[@]}"; do
  declare -F "workload_$p" > /dev/null || { echo "FAIL: no workload called $p"; failed+=("$p"); continue; }
  run_program "$p"
done
echo "real_programs: ${#passed[@]} passed (${passed[*]-}), ${#failed[@]} failed (${failed[*]-}), ${#skipped[@]} skipped (${skipped[*]-})"
[ ${#failed[@]} -eq 0 ]
