#!/usr/bin/python3
"""Runs the allocator workloads under elfc and its peers, side by side.

Every program of //tools/workloads, and real programs from Debian (sqlite3,
python3, perl, g++, git) with fixed inputs, run under elfc, glibc, jemalloc,
tcmalloc and mimalloc (LD_PRELOAD), interleaved and repeated. Prints
throughput and peak RSS tables with elfc's ratios, whether the performance
targets are met, and in every mode one line starting `SUMMARY:` (elfc /
best peer geometric mean, rows below 0.85x, peak RSS geometric mean against
glibc, rows above 1.30x, the load average).

  bazel build //elfc:libelfc.so //tools/workloads:all     (./run.sh does this)
  /usr/bin/python3 tools/harness.py --bin_dir=bazel-bin [--full] [...]

Modes:
  quick (default)  threads 1 and 2, 3 repetitions, 0.5 s runs, short inputs
                   for the real programs (31 rows, ~5 minutes)
  --full           threads 1, 2, 4, ... and nproc, 5 repetitions, 1 s runs,
                   full inputs; writes info/performance.md, the summary plot
                   info/perf_summary.png and one plot per workload
  --instructions   instead of timing, counts instructions per op of the
                   single-thread rows (and the malloc/free pair) under
                   valgrind --tool=callgrind with a fixed op count: the
                   difference between a run of N and one of 2N ops, divided
                   by N, so start-up and warm-up cancel. The count does not
                   depend on the machine's load, so a change can be judged
                   on a busy machine (~3 minutes for the five allocators on
                   a quiet 2-CPU machine). With --full: both, in one report.
Filters and overrides: --workloads=threadtest-small,larson (row or program
names), --allocators=elfc,glibc, --reps=N, --seconds=S, --threads=1,2,
--report_dir=DIR (write the report in any mode). --extra=NAME=LIB runs a
further build under LD_PRELOAD (./run.sh --checked passes elfc's checked
build as elfc-checked) and reports its throughput against elfc's;
--label=NAME=TEXT says in the report how it was built (the report never
names a machine path).

A verdict that holds: the report names the commit and refuses to be written
into the work tree (info/performance.md) from a tree with uncommitted
changes (--allow_dirty overrides for local use and says so in the report);
a commit or an edit made while it runs is recorded in its notes. When the load average exceeds half
the CPUs before the run, or other work used more than half the CPUs during
it (busy CPU time from /proc/stat less the harness's own and its children's:
the load average after the run counts the harness's own threads), it warns
on stderr, in the output and in the report: the figures then measure the
machine as much as the allocators. It first waits up to --settle_seconds
(90) for the load to fall, since the build just before a run raises the
one-minute average for about 40 s.

Peers are Debian's packages (libjemalloc2, libtcmalloc-minimal4,
libmimalloc2.0); a missing one is skipped with a note. glibc is the process
without LD_PRELOAD. Each repetition runs every (workload, threads) with every
allocator, in an order rotated from one run to the next, so drift on a busy
machine hits all allocators alike; medians over the repetitions are reported
with their spread. Throughput is each program's own RESULT line (ops_per_sec,
timed inside the program), or for a real program its fixed op count over its
wall time; peak RSS is the process's ru_maxrss from wait4, measured from
outside (by //tools/workloads:peak_rss, which starts each program). A real
program's output must equal its output under glibc, or the run fails.
"""
import argparse
import collections
import datetime
import hashlib
import math
import os
import platform
import random
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBDIR = "/usr/lib/x86_64-linux-gnu"
# (name, library, Debian package); glibc is no preload, elfc is ours.
PEERS = [
    ("jemalloc", os.path.join(LIBDIR, "libjemalloc.so.2"), "libjemalloc2"),
    ("tcmalloc", os.path.join(LIBDIR, "libtcmalloc_minimal.so.4"),
     "libtcmalloc-minimal4"),
    ("mimalloc", os.path.join(LIBDIR, "libmimalloc.so.2"), "libmimalloc2.0"),
]
# How the builds passed with --extra were made, when --label does not say.
DEFAULT_LABELS = {
    "elfc-checked": "//elfc:libelfc.so built with --config=checked",
}

# A row of the tables: a program of //tools/workloads (kind "workload":
# threads and duration are added per run) or a real program (kind
# "program": fixed input, see PROGRAMS). threads: "all" (every thread count
# of the mode), "single" (1 only) or "multi" (every count >= 2: rows whose
# point is blocks crossing threads). icount: the --iterations of one run in
# --instructions mode (None: not counted; a row must be single-thread to
# be counted; bigblock is not: its cost is mmap, page faults and munmap in
# the kernel, which callgrind does not see). See tools/workloads/README.md for what each does and what an
# op is.
Row = collections.namedtuple("Row", "name program args threads icount kind")


def W(name, program, args, threads="all", icount=None):
    return Row(name, program, args, threads, icount, "workload")


WORKLOADS = [
    W("threadtest-small", "threadtest", ["--size=64", "--objects=10000"],
      icount=10),
    W("threadtest-medium", "threadtest", ["--size=2048", "--objects=10000"],
      icount=10),
    W("shbench-small", "shbench",
      ["--min_size=8", "--max_size=64", "--slots=1000"], icount=50),
    W("shbench-medium", "shbench",
      ["--min_size=64", "--max_size=4096", "--slots=1000"], icount=50),
    W("prodcons", "prodcons",
      ["--min_size=16", "--max_size=256", "--batch=64", "--queue=64"]),
    W("larson", "larson",
      ["--min_size=8", "--max_size=1000", "--slots=5000", "--rounds=20"]),
    W("pair_latency", "pair_latency", ["--sizes=16,64,256,1024,4096"],
      threads="single", icount=20000),
    W("bigblock", "bigblock",
      ["--min_size=1048576", "--max_size=16777216", "--slots=4"]),
    W("bigblock-mid", "bigblock",
      ["--min_size=262144", "--max_size=2097152", "--slots=64"]),
    W("realloc_growth", "realloc_growth",
      ["--min_size=16", "--max_size=4194304", "--buffers=4"], icount=20000),
    W("xthread_churn", "xthread_churn",
      ["--min_size=16", "--max_size=16384", "--slots=2000"],
      threads="multi"),
    W("glibc_thread", "glibc_thread",
      ["--min_size=4", "--max_size=32768", "--slots=1024"], icount=50000),
    W("mstress", "mstress",
      ["--min_size=8", "--max_size=2048", "--slots=20000"], threads="multi"),
    W("server", "server",
      ["--min_size=8", "--max_size=65536", "--mean_life=20000"],
      icount=50000),
    W("dbsim", "dbsim",
      ["--pages=2000", "--page_size=4360", "--rows=100000"],
      threads="single", icount=50000),
    Row("sqlite3", "/usr/bin/sqlite3", [], "single", None, "program"),
    Row("python3", "/usr/bin/python3", [], "single", None, "program"),
    Row("python3-pymalloc", "/usr/bin/python3", [], "single", None,
        "program"),
    Row("perl", "/usr/bin/perl", [], "single", None, "program"),
    Row("g++", "/usr/bin/g++", [], "single", None, "program"),
    Row("git-log", "/usr/bin/git", [], "single", None, "program"),
    Row("git-pack", "/usr/bin/git", [], "single", None, "program"),
]

# The targets of the issues, checked at the end of every run.
TARGET_BEST_GMEAN = 1.10  # elfc / best peer throughput, geometric mean
TARGET_BEST_FLOOR = 0.85  # ... and no row below this
TARGET_RSS_GMEAN = 1.05   # elfc / glibc peak RSS, geometric mean, at most
TARGET_RSS_CAP = 1.30     # ... and no row above this

RESULT_RE = re.compile(r"^RESULT (.*)$", re.M)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Real programs. Each gets a deterministic input written by the harness into
# a scratch directory, which is the program's working directory, so its
# command line names no path. ops is the fixed amount of work the input
# does; throughput is ops / wall time.

SQLITE_COLUMNS = "id INTEGER PRIMARY KEY, category INTEGER, name TEXT, " \
    "price REAL, payload TEXT"


def sqlite_script(rows):
    """An in-memory database: rows inserted in multi-row INSERTs (as a
    loader would), an index, GROUP BY queries, an update that grows rows, a
    delete, and queries again. Contents from a fixed LCG: the same script
    every time."""
    x = 4141
    out = ["CREATE TABLE items(%s);" % SQLITE_COLUMNS, "BEGIN;"]
    values = []
    for i in range(1, rows + 1):
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        cat = (x >> 33) % 97
        name = "item-%x-%s" % (x >> 40, "abcdefghij"[: (x >> 20) % 10 + 1])
        price = ((x >> 12) % 100000) / 100.0
        payload = "p" * ((x >> 50) % 200)
        values.append("(%d,%d,'%s',%.2f,'%s')" % (i, cat, name, price,
                                                  payload))
        if len(values) == 500 or i == rows:
            out.append("INSERT INTO items VALUES %s;" % ",".join(values))
            values = []
    out += [
        "COMMIT;",
        "CREATE INDEX items_by_category ON items(category, price);",
        "SELECT category, count(*), round(sum(price), 2), "
        "max(length(payload)) FROM items GROUP BY category "
        "ORDER BY category;",
        "SELECT substr(name, 6, 2) AS p, count(*) FROM items GROUP BY p "
        "ORDER BY count(*) DESC, p LIMIT 20;",
        "UPDATE items SET payload = payload || name || name "
        "WHERE id % 7 = 0;",
        "DELETE FROM items WHERE id % 5 = 0;",
        "SELECT count(*), sum(length(payload)) FROM items;",
        "SELECT category, round(avg(price), 2) FROM items "
        "WHERE price > 500 GROUP BY category ORDER BY category;",
        "SELECT category, count(*) FROM (SELECT category, lag(category) "
        "OVER (ORDER BY id) AS previous FROM items) "
        "WHERE category = previous GROUP BY category ORDER BY category;",
    ]
    return "\n".join(out) + "\n"


PYTHON_SCRIPT = r'''
import collections
import sys
n = int(sys.argv[1])
d = {}
recent = collections.deque(maxlen=300)
total = 0
for i in range(n):
    key = "key-%d-%s" % (i, "x" * (i % 37))
    d[key] = [i, str(i) * (i % 5 + 1), (i, -i)]
    recent.append(key)
    if i % 3 == 0:
        j = i // 2
        d.pop("key-%d-%s" % (j, "x" * (j % 37)), None)
    if i % 500 == 499:
        buf = bytearray()
        for k in range(300):
            buf += b"y" * (k * 13 % 4096)
        total += len(buf)
        words = " ".join(sorted(recent)).split()
        total += len(words) + len(bytearray(1100000))
pairs = sorted(d.items(), key=lambda kv: (len(kv[0]), kv[0]))
print(len(d), total, sum(len(v[1]) for _, v in pairs), pairs[len(pairs) // 2][0])
'''

PERL_SCRIPT = r'''
my $n = shift;
my (%h, @a);
my $total = 0;
for my $i (0 .. $n - 1) {
    $h{"k$i" . ("x" x ($i % 29))} = [$i, "v" x ($i % 50)];
    push @a, "k$i" if $i % 4 == 0;
    if ($i % 3 == 0) {
        my $j = int($i / 2);
        delete $h{"k$j" . ("x" x ($j % 29))};
    }
    if ($i % 1000 == 999) {
        my $s = "";
        $s .= "y" x ($_ % 300) for 1 .. 500;
        $total += length($s);
        @a = sort @a;
        splice(@a, 0, @a - 1000) if @a > 1000;
    }
}
my $sum = 0;
$sum += length($_->[1]) for values %h;
print scalar(keys %h), " $total $sum ", scalar(@a), "\n";
'''


def cxx_source(functions):
    """A C++ translation unit for g++: a few standard-library templates
    (map, set, unordered_map, vector, sort, ostringstream) instantiated for
    `functions` struct types of their own, so that the compiler's work (and
    its allocations: trees, RTL, the optimisers' tables) grows with the
    count."""
    out = ["#include <algorithm>", "#include <map>", "#include <set>",
           "#include <sstream>", "#include <string>",
           "#include <unordered_map>", "#include <vector>",
           "bool Split(const std::string& s, std::string* k, long* v) {",
           "  const std::size_t eq = s.find('=');",
           "  if (eq == std::string::npos || eq == 0) return false;",
           "  *k = s.substr(0, eq);",
           "  *v = std::stol(s.substr(eq + 1));",
           "  return true;",
           "}",
           "template <typename T> std::map<std::string, std::vector<T>> Group(",
           "    const std::vector<std::pair<std::string, T>>& in) {",
           "  std::map<std::string, std::vector<T>> out;",
           "  for (const auto& [k, v] : in) out[k].push_back(v);",
           "  for (auto& [k, v] : out) std::sort(v.begin(), v.end());",
           "  return out;",
           "}"]
    for i in range(functions):
        out += [
            "struct S%d {" % i,
            "  long a; double b; std::string c; int d[%d];" % (i % 7 + 1),
            "  bool operator<(const S%d& o) const {" % i,
            "    return a < o.a || (a == o.a && c < o.c);",
            "  }",
            "};",
            "std::string F%d(const std::vector<std::string>& args) {" % i,
            "  std::vector<std::pair<std::string, S%d>> kv;" % i,
            "  std::unordered_map<std::string, std::set<S%d>> u;" % i,
            "  std::string k;",
            "  long v;",
            "  for (const auto& s : args) {",
            "    if (Split(s, &k, &v)) {",
            "      kv.emplace_back(k, S%d{v, %d.5, k, {}});" % (i, i),
            "      u[k].insert(kv.back().second);",
            "    }",
            "  }",
            "  std::ostringstream os;",
            "  for (const auto& [key, list] : Group(kv)) {",
            "    os << key << ':' << list.size() << ':' << u[key].size() "
            "<< ';';",
            "  }",
            "  return os.str();",
            "}"]
    return "\n".join(out) + "\n"


GIT_WORDS = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta",
             "theta", "iota", "kappa", "lambda", "mu"]


def git_history(commits):
    """A `git fast-import` stream: 150 files of ~200 lines, then `commits`
    commits that each edit 5 of them (lines replaced, inserted, deleted),
    from a fixed seed, with fixed authors and dates: the same repository,
    to the object ids, every time."""
    rng = random.Random(1)
    files = {"src/f%03d.c" % i: ["line %d %s" % (j, rng.choice(GIT_WORDS))
                                 for j in range(200)] for i in range(150)}
    out = []
    for c in range(commits):
        changed = rng.sample(sorted(files), 5)
        for f in changed:
            lines = files[f]
            for _ in range(8):
                k = rng.randrange(len(lines))
                op = rng.random()
                if op < 0.4:
                    lines[k] = "line %d %s %s" % (k, rng.choice(GIT_WORDS),
                                                  rng.choice(GIT_WORDS))
                elif op < 0.7:
                    lines.insert(k, "new %s %d" % (rng.choice(GIT_WORDS),
                                                   rng.randrange(1000)))
                elif len(lines) > 50:
                    del lines[k]
        when = 1600000000 + c * 60
        msg = "change %d\n" % c
        out.append("commit refs/heads/main\n"
                   "author A U Thor <a@example.com> %d +0000\n"
                   "committer A U Thor <a@example.com> %d +0000\n"
                   "data %d\n%s" % (when, when, len(msg), msg))
        for f in (sorted(files) if c == 0 else changed):
            data = "\n".join(files[f]) + "\n"
            out.append("M 100644 inline %s\ndata %d\n%s\n" % (
                f, len(data.encode()), data))
        out.append("\n")
    return "".join(out)


# git reads no configuration but the repository's own.
GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}


def git_repository(workdir, commits):
    """Creates workdir/repo from git_history(commits) (once per run, shared
    by the git rows; the import runs without LD_PRELOAD)."""
    repo = os.path.join(workdir, "repo")
    if os.path.isdir(repo):
        return
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.update(GIT_ENV)
    subprocess.run(["git", "init", "-q", "-b", "main", repo], env=env,
                   check=True)
    subprocess.run(["git", "-C", repo, "fast-import", "--quiet"],
                   input=git_history(commits).encode(), env=env, check=True)


def program_setup(name, full, workdir):
    """Writes the input of real-program row `name` into workdir; returns
    (argv after the program, extra environment, ops, description)."""
    if name == "sqlite3":
        rows = 200000 if full else 50000
        with open(os.path.join(workdir, "items.sql"), "w") as f:
            f.write(sqlite_script(rows))
        return ([":memory:", ".read items.sql"], {}, rows,
                "in-memory database: %d rows inserted, an index, GROUP BY "
                "queries, update, delete, a window query (script generated by "
                "tools/harness.py; ops = rows)" % rows)
    if name in ("python3", "python3-pymalloc"):
        n = 200000 if full else 40000
        with open(os.path.join(workdir, "work.py"), "w") as f:
            f.write(PYTHON_SCRIPT)
        if name == "python3":
            return (["work.py", str(n)], {"PYTHONMALLOC": "malloc"}, n,
                    "PYTHONMALLOC=malloc (every object through malloc): "
                    "dicts, lists, strings, bytearray growth and 1.1 MB "
                    "bytearrays (script in tools/harness.py; ops = loop "
                    "iterations)")
        return (["work.py", str(n)], {}, n,
                "the same script with Python's own small-object allocator "
                "(malloc sees blocks above 512 bytes and the arenas)")
    if name == "perl":
        n = 400000 if full else 120000
        with open(os.path.join(workdir, "work.pl"), "w") as f:
            f.write(PERL_SCRIPT)
        return (["work.pl", str(n)], {}, n,
                "hashes, arrays, string growth, sorting (script in "
                "tools/harness.py; ops = loop iterations)")
    if name == "g++":
        n = 4 if full else 2
        with open(os.path.join(workdir, "work.cc"), "w") as f:
            f.write(cxx_source(n))
        return (["-std=c++17", "-O2", "-S", "-o", "-", "work.cc"], {}, n,
                "compiling a C++ file of standard-library templates "
                "instantiated for %d types of its own to assembly (cc1plus; "
                "source generated by tools/harness.py; ops = types)" % n)
    if name in ("git-log", "git-pack"):
        commits = 2000
        git_repository(workdir, commits)
        if name == "git-log":
            return (["-C", "repo", "log", "-p", "--stat", "--oneline"],
                    dict(GIT_ENV), commits,
                    "every commit's patch and diffstat of a repository of "
                    "%d commits over 150 files (built by git fast-import "
                    "from a stream tools/harness.py generates; ops = "
                    "commits)" % commits)
        return (["-C", "repo", "pack-objects", "--all", "--threads=1",
                 "-q", "--no-reuse-delta", "--no-reuse-object",
                 "../pack"], dict(GIT_ENV), commits,
                "the same repository packed with every delta computed "
                "afresh (as `git repack -f`); the output is the pack's "
                "checksum; ops = commits")
    raise ValueError(name)


# ---------------------------------------------------------------------------


def thread_counts(full, override):
    if override:
        return sorted({int(t) for t in override.split(",")})
    if not full:
        return [1, 2]
    n = os.cpu_count() or 1
    counts, t = [1], 2
    while t < n:
        counts.append(t)
        t *= 2
    if n > 1:
        counts.append(n)
    return counts


def row_threads(row, threads):
    if row.threads == "single":
        return [1]
    if row.threads == "multi":
        return [t for t in threads if t >= 2]
    return threads


def run_one(launcher, argv, preload, timeout, extra_env=None, cwd=None):
    """Runs one program through the peak_rss launcher; returns (its stdout
    without the launcher's lines, peak RSS in KiB, wall seconds) or raises
    RuntimeError with the reason.

    Peak RSS is the program's ru_maxrss from wait4, taken by peak_rss (a small
    C++ process) rather than here: Linux keeps a process's peak RSS across
    execve, so anything forked from this Python process would report at
    least Python's own footprint (~14 MiB)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.pop("PYTHONMALLOC", None)
    env.update(extra_env or {})
    cmd = [launcher] + (["--preload=" + preload] if preload else []) + argv
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        # Own session, so a hung run is killed with everything it started.
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, cwd=cwd,
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise RuntimeError("timed out after %.0f s" % timeout)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if "cannot be preloaded" in stderr:
        raise RuntimeError("LD_PRELOAD failed: " + stderr.strip()[-300:])
    if proc.returncode != 0:
        raise RuntimeError("exit status %d: %s" %
                           (proc.returncode, stderr.strip()[-300:]))
    rss = re.search(r"^PEAK_RSS_KIB=(\d+)\n", stdout, re.M)
    wall = re.search(r"^WALL_SECONDS=([0-9.]+)\n", stdout, re.M)
    if not rss or not wall:
        raise RuntimeError("no PEAK_RSS_KIB/WALL_SECONDS line from peak_rss")
    body = stdout[:wall.start()] + stdout[wall.end():rss.start()] + \
        stdout[rss.end():]
    return body, int(rss.group(1)), float(wall.group(1))


def check_outputs(res):
    """A real program must do the same work under every allocator: its
    output under each must equal its output under glibc (and glibc's must
    not vary between runs). A mismatching allocator's measurements are
    dropped and its runs reported as failed."""
    for (name, t, alloc), digests in sorted(res.outputs.items()):
        ref = res.outputs.get((name, t, "glibc"))
        if not ref:
            continue
        if alloc != "glibc" and any(d != ref[0] for d in digests):
            res.fail((name, t, alloc),
                     "output differs from the output under glibc")
            res.rate.pop((name, t, alloc), None)
            res.rss.pop((name, t, alloc), None)
        elif alloc == "glibc" and len(set(ref)) > 1:
            res.fail((name, t, alloc), "output differs between runs")


def result_fields(stdout):
    lines = RESULT_RE.findall(stdout)
    if len(lines) != 1:
        raise RuntimeError("expected one RESULT line, got %d" % len(lines))
    return dict(kv.split("=", 1) for kv in lines[0].split())


def check_plain_build(binary):
    """Returns why `binary` cannot be measured under LD_PRELOAD, or None.

    A program built with --config=elfc (--custom_malloc) defines malloc
    itself, and the executable's definitions win over any preloaded library,
    so every column would silently measure the same allocator; sanitizer
    builds measure the sanitizer. Both leave traces in the dynamic symbol
    table."""
    try:
        out = subprocess.run(["nm", "-D", binary], capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None  # no binutils: cannot check
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TtWw" and parts[2] in (
                "malloc", "free", "_Znwm"):
            return ("defines %s itself (built with --config=elfc or "
                    "--custom_malloc?)" % parts[2])
        if parts and re.match(r"__(asan|tsan|ubsan|msan)_", parts[-1]):
            return "is a sanitizer build (--config=asan/tsan/...)"
    return None


def median_spread(xs):
    """Median and spread: the larger distance from the median to the min or
    the max, as a fraction of the median."""
    med = statistics.median(xs)
    spread = max(med - min(xs), max(xs) - med) / med if med else 0.0
    return med, spread


def gmean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def fmt_rate(x):
    """ops/s with an SI suffix, 3 significant digits (rates span 10 to
    10^8: a multi-MiB block churn to a malloc/free pair)."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return "%.3g%s" % (x / div, suffix)
    return "%.3g" % x


class Results:
    """Measurements keyed by (workload, threads, allocator)."""

    def __init__(self, rows, allocs, extras=()):
        self.rows = rows        # [(workload, threads)]
        self.allocs = allocs    # [allocator name]
        self.extras = set(extras)  # --extra builds: compared with elfc only
        self.rate = {}          # key -> [ops/s]
        self.rss = {}           # key -> [KiB]
        self.errors = {}        # key -> [message]
        self.outputs = {}       # key -> [(rep, digest)] of real programs

    def add(self, key, rate, rss):
        self.rate.setdefault(key, []).append(rate)
        self.rss.setdefault(key, []).append(rss)

    def median(self, table, w, t, a):
        xs = table.get((w, t, a))
        return median_spread(xs) if xs else None

    def fail(self, key, message):
        self.errors.setdefault(key, []).append(message)


def ratio_rows(res):
    """Per row: elfc/glibc and elfc/best-peer throughput, elfc/glibc RSS."""
    out = []
    peers = [a for a in res.allocs if a != "elfc" and a not in res.extras]
    for w, t in res.rows:
        e = res.median(res.rate, w, t, "elfc")
        if e is None:
            continue
        g = res.median(res.rate, w, t, "glibc")
        best = None
        for a in peers:
            m = res.median(res.rate, w, t, a)
            if m and (best is None or m[0] > best[1]):
                best = (a, m[0])
        er = res.median(res.rss, w, t, "elfc")
        gr = res.median(res.rss, w, t, "glibc")
        out.append({
            "row": (w, t),
            "vs_glibc": e[0] / g[0] if g else None,
            "vs_glibc_spread": e[1] + g[1] if g else None,
            "vs_best": e[0] / best[1] if best else None,
            "best": best[0] if best else None,
            "rss_vs_glibc": er[0] / gr[0] if (er and gr) else None,
        })
    return out


def throughput_table(res, ratios):
    by_row = {r["row"]: r for r in ratios}
    cols = res.allocs
    head = "%-18s %3s" % ("ops/s", "thr") + "".join(
        "%15s" % a for a in cols) + "%11s%11s  %s" % ("elfc/glibc", "elfc/best",
                                                      "best peer")
    lines = [head, "-" * len(head)]
    for w, t in res.rows:
        cells = []
        for a in cols:
            m = res.median(res.rate, w, t, a)
            if m:
                cells.append("%15s" % ("%s +-%.0f%%" % (fmt_rate(m[0]),
                                                         m[1] * 100)))
            else:
                cells.append("%15s" % ("FAIL" if (w, t, a) in res.errors
                                       else "-"))
        r = by_row.get((w, t), {})
        rg = "%10.2fx" % r["vs_glibc"] if r.get("vs_glibc") else "%11s" % "-"
        rb = "%10.2fx" % r["vs_best"] if r.get("vs_best") else "%11s" % "-"
        lines.append("%-18s %3d" % (w, t) + "".join(cells) + rg + rb +
                     "  " + (r.get("best") or ""))
    return "\n".join(lines)


def memory_table(res, ratios):
    by_row = {r["row"]: r for r in ratios}
    cols = res.allocs
    width = max([10] + [len(a) + 1 for a in cols])
    head = "%-18s %3s" % ("peak RSS MiB", "thr") + "".join(
        "%*s" % (width, a) for a in cols) + "%11s" % "elfc/glibc"
    lines = [head, "-" * len(head)]
    for w, t in res.rows:
        cells = []
        for a in cols:
            m = res.median(res.rss, w, t, a)
            cells.append("%*.1f" % (width, m[0] / 1024) if m
                         else "%*s" % (width, "-"))
        r = by_row.get((w, t), {})
        rr = ("%10.2fx" % r["rss_vs_glibc"] if r.get("rss_vs_glibc")
              else "%11s" % "-")
        lines.append("%-18s %3d" % (w, t) + "".join(cells) + rr)
    return "\n".join(lines)



def verdicts(res, ratios):
    """Plain-words summary of the targets; returns a list of lines."""
    if "elfc" not in res.allocs:
        return ["elfc was not run: no targets checked."]
    best = [r["vs_best"] for r in ratios if r["vs_best"]]
    glibc = [r["vs_glibc"] for r in ratios if r["vs_glibc"]]
    rss = [r["rss_vs_glibc"] for r in ratios if r["rss_vs_glibc"]]
    out = []
    if best:
        g = gmean(best)
        out.append(
            "elfc throughput / best peer: geometric mean %.2fx over %d rows "
            "-> target >= %.2fx %s." % (
                g, len(best), TARGET_BEST_GMEAN,
                "MET" if g >= TARGET_BEST_GMEAN else "MISSED"))
        low = [r for r in ratios
               if r["vs_best"] and r["vs_best"] < TARGET_BEST_FLOOR]
        if low:
            out.append(
                "elfc throughput / best peer below %.2fx on %d of %d rows "
                "-> target 'no row below %.2fx' MISSED: %s." % (
                    TARGET_BEST_FLOOR, len(low), len(best), TARGET_BEST_FLOOR,
                    ", ".join("%s t=%d %.2fx (best %s)" % (
                        r["row"][0], r["row"][1], r["vs_best"], r["best"])
                        for r in low)))
        else:
            out.append("elfc throughput / best peer: lowest %.2fx -> target "
                       "'no row below %.2fx' MET." %
                       (min(best), TARGET_BEST_FLOOR))
    else:
        out.append("no peer was measured: throughput targets not checked.")
    if glibc:
        out.append("elfc throughput / glibc: geometric mean %.2fx "
                   "(no target; for reference)." % gmean(glibc))
    for x in sorted(res.extras):
        xs = []
        for w, t in res.rows:
            e = res.median(res.rate, w, t, "elfc")
            m = res.median(res.rate, w, t, x)
            if e and m:
                xs.append(m[0] / e[0])
        if xs:
            g = gmean(xs)
            line = ("%s throughput / elfc: geometric mean %.3fx over %d rows "
                    "(%+.1f%%; lowest row %.2fx)" % (
                        x, g, len(xs), (g - 1) * 100, min(xs)))
            if x == "elfc-checked":
                line += " -> target 'checked build costs at most 5%%' %s" % (
                    "MET" if g >= 0.95 else "MISSED")
            out.append(line + ".")
    if rss:
        g = gmean(rss)
        out.append(
            "elfc peak RSS / glibc: geometric mean %.2fx over %d rows -> "
            "target <= %.2fx %s." % (
                g, len(rss), TARGET_RSS_GMEAN,
                "MET" if g <= TARGET_RSS_GMEAN else "MISSED"))
        high = [r for r in ratios
                if r["rss_vs_glibc"] and r["rss_vs_glibc"] > TARGET_RSS_CAP]
        out.append(
            "elfc peak RSS / glibc above %.2fx on %d of %d rows -> target "
            "'no row above %.2fx' %s%s." % (
                TARGET_RSS_CAP, len(high), len(rss), TARGET_RSS_CAP,
                "MISSED: " if high else "MET",
                ", ".join("%s t=%d %.2fx" % (r["row"][0], r["row"][1],
                                             r["rss_vs_glibc"])
                          for r in high)))
    else:
        out.append("glibc was not measured: memory targets not checked.")
    return out


def summary_line(res, ratios, load_note):
    """The one line every timed run ends with: the issues' four targets."""
    best = [r for r in ratios if r["vs_best"]]
    rss = [r for r in ratios if r["rss_vs_glibc"]]
    parts = []
    if best:
        low = [r for r in best if r["vs_best"] < TARGET_BEST_FLOOR]
        parts.append("elfc/best peer %.2fx geomean over %d rows (target "
                     ">= %.2f), %d rows below %.2fx%s" % (
                         gmean([r["vs_best"] for r in best]), len(best),
                         TARGET_BEST_GMEAN, len(low), TARGET_BEST_FLOOR,
                         " (%s)" % ", ".join("%s/%d" % r["row"] for r in low)
                         if low else ""))
    else:
        parts.append("elfc/best peer: not measured")
    if rss:
        high = [r for r in rss if r["rss_vs_glibc"] > TARGET_RSS_CAP]
        parts.append("peak RSS vs glibc %.2fx geomean (target <= %.2f), "
                     "%d rows above %.2fx%s" % (
                         gmean([r["rss_vs_glibc"] for r in rss]),
                         TARGET_RSS_GMEAN, len(high), TARGET_RSS_CAP,
                         " (%s)" % ", ".join("%s/%d" % r["row"] for r in high)
                         if high else ""))
    else:
        parts.append("peak RSS vs glibc: not measured")
    return "SUMMARY: " + "; ".join(parts) + "; " + load_note


def command_line(program, args):
    return " ".join(shlex.quote(x) for x in [program] + args)


def shown_command(argv):
    """This run's command line for the report, without machine paths: the
    build and report directories are left out, --extra libraries named by
    their NAME only."""
    shown = ["tools/harness.py"]
    for a in argv:
        if a.startswith(("--bin_dir", "--report_dir")):
            continue
        if a.startswith("--extra="):
            a = "--extra=%s=..." % a[len("--extra="):].partition("=")[0]
        shown.append(shlex.quote(a))
    return " ".join(shown)


# ---------------------------------------------------------------------------
# Instruction counts.


def callgrind_ir(argv, preload, timeout):
    """Instructions executed inside workloads::RunBody (the workers' timed
    work) by one run of argv under callgrind; also returns the RESULT
    fields."""
    with tempfile.TemporaryDirectory(prefix="harness-cg-") as tmp:
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        if preload:
            # valgrind keeps the client's LD_PRELOAD (and adds its own).
            env["LD_PRELOAD"] = preload
        cmd = ["valgrind", "--tool=callgrind",
               "--callgrind-out-file=" + os.path.join(tmp, "out"),
               "--collect-atstart=no",
               "--toggle-collect=workloads::RunBody*"] + argv
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True,
                                  text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise RuntimeError("timed out under callgrind after %.0f s" %
                               timeout)
    if proc.returncode != 0:
        raise RuntimeError("exit status %d under callgrind: %s" % (
            proc.returncode, proc.stderr.strip()[-300:]))
    m = re.search(r"Collected : (\d+)", proc.stderr)
    if not m:
        raise RuntimeError("no 'Collected' line from callgrind")
    return int(m.group(1)), result_fields(proc.stdout)


def count_instructions(rows, allocs, bin_dir):
    """(row name, allocator) -> instructions per op, or an error string.

    Each row runs twice with --iterations N and 2N; (Ir(2N) - Ir(N)) /
    (ops(2N) - ops(N)) is the steady-state cost of one op: the allocator's
    first-touch set-up and the workload's own set-up cancel."""
    out = {}
    total = len(rows) * len(allocs)
    done = 0
    for row in rows:
        binary = os.path.join(bin_dir, "tools/workloads", row.program)
        for alloc, lib in allocs:
            done += 1
            try:
                counts = []
                for n in (row.icount, 2 * row.icount):
                    ir, fields = callgrind_ir(
                        [binary] + row.args +
                        ["--threads=1", "--iterations=%d" % n], lib, 600)
                    counts.append((ir, int(fields["ops"])))
                (ir1, ops1), (ir2, ops2) = counts
                if ops2 <= ops1:
                    raise RuntimeError("op counts %d, %d" % (ops1, ops2))
                out[(row.name, alloc)] = (ir2 - ir1) / (ops2 - ops1)
                status = "%.0f instructions/op" % out[(row.name, alloc)]
            except (RuntimeError, KeyError, ValueError) as e:
                out[(row.name, alloc)] = str(e)
                status = "FAILED: %s" % e
            log("[%d/%d] instructions %s %s: %s" % (done, total, row.name,
                                                   alloc, status))
    return out


def instruction_table(rows, allocs, counts):
    names = [a for a, _ in allocs]
    peers = [a for a in names if a in {p for p, _, _ in PEERS} or
             a == "glibc"]
    head = "%-18s" % "instructions/op" + "".join("%11s" % a for a in names) + \
        "%12s%12s  %s" % ("elfc/glibc", "elfc/best", "best peer")
    lines = [head, "-" * len(head)]
    ratios = []
    for row in rows:
        cells = []
        for a in names:
            v = counts.get((row.name, a))
            cells.append("%11s" % ("%.0f" % v if isinstance(v, float)
                                   else ("FAIL" if v else "-")))
        e = counts.get((row.name, "elfc"))
        g = counts.get((row.name, "glibc"))
        best = min(((counts[(row.name, a)], a) for a in peers
                    if isinstance(counts.get((row.name, a)), float)),
                   default=None)
        rg = "%11.2fx" % (e / g) if isinstance(e, float) and \
            isinstance(g, float) else "%12s" % "-"
        rb = "%11.2fx" % (e / best[0]) if isinstance(e, float) and best \
            else "%12s" % "-"
        if isinstance(e, float) and best:
            ratios.append(e / best[0])
        lines.append("%-18s" % row.name + "".join(cells) + rg + rb + "  " +
                     (best[1] if best else ""))
    return "\n".join(lines), ratios


def instruction_verdicts(counts, ratios):
    out = []
    if ratios:
        out.append("elfc instructions / fewest of the peers: geometric mean "
                   "%.2fx over %d single-thread rows (lower is better)." % (
                       gmean(ratios), len(ratios)))
    e = counts.get(("pair_latency", "elfc"))
    t = counts.get(("pair_latency", "tcmalloc"))
    if isinstance(e, float) and isinstance(t, float):
        out.append("malloc/free pair (pair_latency, incl. the loop): elfc "
                   "%.0f instructions, tcmalloc %.0f -> target 'fewer than "
                   "tcmalloc' %s." % (e, t, "MET" if e < t else "MISSED"))
    else:
        out.append("malloc/free pair: elfc or tcmalloc not counted; target "
                   "not checked.")
    return out


# ---------------------------------------------------------------------------
# The machine, the tree and the load.


def git(*args):
    """git's output in the work tree (trailing newline removed), or None."""
    try:
        return subprocess.run(["git", "-C", ROOT] + list(args),
                              capture_output=True, text=True,
                              check=True).stdout.rstrip("\n")
    except (OSError, subprocess.CalledProcessError):
        return None


def tree_state():
    """(commit, list of changed paths) of the work tree; commit None when
    this is not a git checkout."""
    commit = git("rev-parse", "--short=12", "HEAD")
    status = git("status", "--porcelain")
    changed = [l[3:] for l in (status or "").splitlines() if l.strip()]
    return commit, changed


def load_check(when, timed=True):
    """Returns (load average, warning or None): a 1-minute load above half
    the CPUs means other work competes with the timed runs (instruction
    counts do not depend on it)."""
    load = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    if load > cpus / 2 and not timed:
        log("note: load average %.2f %s the run (instruction counts do not "
            "depend on it)" % (load, when))
    elif load > cpus / 2:
        return load, ("load average %.2f %s the run exceeds half of the %d "
                      "CPUs: other work competes with the allocators, "
                      "figures are noisy and not a verdict" % (
                          load, when, cpus))
    return load, None


class OtherWork:
    """How many CPUs other work used while the harness ran: the machine's
    busy CPU time (/proc/stat) less this process's and its children's
    (getrusage), over the wall time. The load average after a run cannot
    say this: the harness's own runs (up to 4 threads) are in it."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        busy = None
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
            # user nice system idle iowait irq softirq steal ...
            busy = (sum(fields[0:3]) + sum(fields[5:8])) / \
                os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
        ours = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            r = resource.getrusage(who)
            ours += r.ru_utime + r.ru_stime
        return time.monotonic(), busy, ours

    def cpus(self):
        """Average CPUs used by other work since construction, or None."""
        t0, busy0, ours0 = self.start
        t1, busy1, ours1 = self._sample()
        if busy0 is None or busy1 is None or t1 <= t0:
            return None
        return max(0.0, ((busy1 - busy0) - (ours1 - ours0)) / (t1 - t0))


def other_work_check(other):
    """A warning when other work used more than half the CPUs, or None."""
    cpus = os.cpu_count() or 1
    if other is not None and other > cpus / 2:
        return ("other work used %.2f of the %d CPUs on average during the "
                "run (busy CPU time less the harness's own): the figures are "
                "noisy and not a verdict" % (other, cpus))
    return None


def settle(max_seconds, poll=5.0):
    """Waits up to max_seconds for the 1-minute load average to fall below
    half the CPUs: it decays with a one-minute time constant, so the build
    ./run.sh does just before the harness (2 CPUs busy: load ~2) reads as
    competing work for about 40 s after it ends. Returns load_check's
    result once it is quiet or the time is up."""
    deadline = time.monotonic() + max_seconds
    load, warning = load_check("at the start of")
    if warning and max_seconds > 0:
        log("harness: load average %.2f on %d CPUs; waiting up to %.0f s for "
            "it to settle" % (load, os.cpu_count() or 1, max_seconds))
    while warning and time.monotonic() < deadline:
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
        load, warning = load_check("at the start of")
    return load, warning


def warn(msg):
    log("")
    log("!" * 78)
    log("WARNING: " + msg)
    log("!" * 78)


def machine_description(commit_note):
    def read(path):
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return ""
    cpu = re.search(r"^model name\s*:\s*(.*)$", read("/proc/cpuinfo"), re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", read("/proc/meminfo"), re.M)

    def pkg_version(pkg):
        try:
            return subprocess.run(
                ["dpkg-query", "-W", "-f=${Version}", pkg],
                capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "not installed"
    return {
        "cpu": cpu.group(1).strip() if cpu else platform.processor() or "?",
        "cpus": os.cpu_count(),
        "memory_gib": int(mem.group(1)) / 1024 / 1024 if mem else 0,
        "kernel": platform.release(),
        "os": "Debian " + read("/etc/debian_version").strip(),
        "glibc": os.confstr("CS_GNU_LIBC_VERSION"),
        "compiler": subprocess.run(["g++", "--version"], capture_output=True,
                                   text=True).stdout.split("\n")[0]
        if os.path.exists("/usr/bin/g++") else "?",
        "elfc": read(os.path.join(ROOT, "elfc/VERSION")).strip(),
        "peers": ", ".join("%s %s (%s)" % (n, pkg_version(p), p)
                           for n, _, p in PEERS),
        "programs": ", ".join("%s %s" % (p, pkg_version(p))
                              for p in ("sqlite3", "python3", "perl", "g++",
                                        "git")),
        "commit": commit_note,
    }


# ---------------------------------------------------------------------------
# Plots and the report.


def import_pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        log("note: matplotlib not installed (Debian: python3-matplotlib); "
            "no plots")
        return None


def make_plots(plt, res, report_dir):
    """One PNG per workload with more than one thread count: throughput and
    peak RSS against threads, one line per allocator. Returns the file
    names written."""
    names = []
    for w in dict.fromkeys(w for w, _ in res.rows):
        threads = [t for ww, t in res.rows if ww == w]
        if len(threads) < 2:
            continue
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
        for a in res.allocs:
            pts = [(t, res.median(res.rate, w, t, a),
                    res.median(res.rss, w, t, a)) for t in threads]
            pts = [p for p in pts if p[1]]
            if not pts:
                continue
            style = dict(marker="o", linewidth=2.5 if a == "elfc" else 1.2,
                         label=a)
            ax1.plot([p[0] for p in pts], [p[1][0] for p in pts], **style)
            ax2.plot([p[0] for p in pts], [p[2][0] / 1024 for p in pts],
                     **style)
        for ax, title in ((ax1, "throughput (ops/s, higher is better)"),
                          (ax2, "peak RSS (MiB, lower is better)")):
            ax.set_title("%s: %s" % (w, title), fontsize=9)
            ax.set_xlabel("threads" if w != "prodcons"
                          else "producer/consumer pairs")
            ax.set_xticks(threads)
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
        ax1.legend(fontsize=8)
        fig.tight_layout()
        name = "perf_%s.png" % w.replace("-", "_")
        fig.savefig(os.path.join(report_dir, name), dpi=90)
        plt.close(fig)
        names.append(name)
    return names


def summary_plot(plt, res, report_dir):
    """perf_summary.png: per row, elfc and each peer relative to glibc
    (throughput and peak RSS, log scale), with the spread as error bars: the
    two medians' spreads added, a bound on the ratio's. Returns the file
    name, or None."""
    if "glibc" not in res.allocs:
        return None
    others = [a for a in res.allocs if a != "glibc"]
    rows = list(res.rows)
    if not rows or not others:
        return None
    height = 0.8 / len(others)
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.32 * len(rows) + 1.8),
                             sharey=True)
    for ax, table, title in (
            (axes[0], res.rate, "throughput / glibc (higher is better)"),
            (axes[1], res.rss, "peak RSS / glibc (lower is better)")):
        for k, a in enumerate(others):
            ys, xs, errs = [], [], []
            for i, (w, t) in enumerate(rows):
                g = res.median(table, w, t, "glibc")
                m = res.median(table, w, t, a)
                if g and m and g[0] > 0 and m[0] > 0:
                    ratio = m[0] / g[0]
                    spread = m[1] + g[1]
                    ys.append(i + (k - (len(others) - 1) / 2) * height)
                    xs.append(ratio)
                    errs.append([ratio - ratio / (1 + spread),
                                 ratio * spread])
            if not xs:
                continue
            # Bars grow from 1 (glibc) to the ratio, left when worse.
            ax.barh(ys, [x - 1 for x in xs], height=height, left=1,
                    label=a, edgecolor="black" if a == "elfc" else "none",
                    linewidth=0.8)
            ax.errorbar(xs, ys, xerr=list(zip(*errs)), fmt="none",
                        ecolor="black", elinewidth=0.8, capsize=1.5)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        # Ratios read as 0.5x, 1x, 2x rather than powers of ten.
        lo, hi = ax.get_xlim()
        ticks = [2.0 ** k for k in range(-12, 13) if lo <= 2.0 ** k <= hi]
        if len(ticks) < 4:
            ticks = [x for x in (0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.1, 1.25, 1.5,
                                 1.75, 2, 2.5, 3) if lo <= x <= hi]
        ax.set_xticks(ticks)
        ax.set_xticklabels(["%gx" % x for x in ticks], fontsize=8)
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3, which="both")
    axes[0].set_yticks(range(len(rows)))
    axes[0].set_yticklabels(["%s t=%d" % r for r in rows], fontsize=8)
    axes[0].invert_yaxis()
    axes[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    name = "perf_summary.png"
    fig.savefig(os.path.join(report_dir, name), dpi=90)
    plt.close(fig)
    return name


def scrub(text, bin_dir):
    """The report speaks of the repository only: the build directory reads
    bazel-bin, the work tree `.`; any other path of this machine's scratch
    or home directories is an error (a report that leaks one would be
    committed)."""
    text = text.replace(os.path.abspath(bin_dir), "bazel-bin")
    text = text.replace(ROOT + "/", "").replace(ROOT, ".")
    for bad in {tempfile.gettempdir(), "/tmp/", os.path.expanduser("~")}:
        if bad and bad != "/" and bad in text:
            raise RuntimeError("the report would name the machine path %s" %
                               bad)
    return text


def write_report(res, ratios, report_dir, mode, commands, machine, load,
                 elapsed, notes, warnings, icount_text, bin_dir):
    os.makedirs(report_dir, exist_ok=True)
    plt = import_pyplot()
    plots, summary = [], None
    if plt and res.rows:
        summary = summary_plot(plt, res, report_dir)
        plots = make_plots(plt, res, report_dir)
    lines = [
        "# Performance: elfc against glibc, jemalloc, tcmalloc and mimalloc",
        "",
        "Generated by `%s` on %s; every number below is "
        "that run's output. Do not edit by hand: rerun it." % (
            mode["command"], datetime.date.today().isoformat()),
        "",
    ]
    if warnings:
        lines += ["**Warning:** %s." % w for w in warnings] + [""]
    lines += [
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        "| CPU | %s, %d logical CPUs |" % (machine["cpu"], machine["cpus"]),
        "| memory | %.1f GiB |" % machine["memory_gib"],
        "| system | %s, Linux %s, %s |" % (machine["os"], machine["kernel"],
                                         machine["glibc"]),
        "| compiler | %s, Bazel `-c opt` |" % machine["compiler"],
        "| elfc | %s, commit %s |" % (machine["elfc"], machine["commit"]),
        "| peers | %s |" % machine["peers"],
        "| real programs | %s |" % machine["programs"],
        "| load | load average %s at the start, %s at the end (with the "
        "harness's own runs); other work used %s CPUs on average during "
        "the runs; %d CPUs |" % (load[0], load[1], load[2],
                                 machine["cpus"]),
        "",
    ]
    if res.rows:
        lines += [
            "## How it was measured",
            "",
            "%s: threads %s, %d interleaved repetitions, %g s per run; %d "
            "runs in %.0f s. Each repetition runs every (workload, threads) "
            "under every allocator in a rotated order. Throughput is the "
            "program's own `ops_per_sec` (ops per workload: see "
            "`tools/workloads/README.md`), or for a real program its fixed "
            "op count over its wall time; a real program's output must "
            "equal its output under glibc. Peak RSS is `ru_maxrss` of the "
            "process (wait4, taken by `tools/workloads/peak_rss`, which "
            "starts each program). Cells are medians; `+-N%%` is the larger "
            "distance from the median to the fastest or slowest run. Peers "
            "are Debian's packages, preloaded; glibc is the process without "
            "`LD_PRELOAD`." % (
                mode["name"], ",".join(str(t) for t in mode["threads"]),
                mode["reps"], mode["seconds"], mode["runs"], elapsed),
            "",
            "Commands (each run with `LD_PRELOAD` set to the allocator's "
            "library, or unset for glibc; `T` = threads):",
            "",
            "```sh",
        ]
        lines += commands
        lines += [
            "```",
            "",
            "## Summary",
            "",
            mode["summary"],
            "",
        ]
        if summary:
            lines += ["![elfc and the peers relative to glibc](%s)" % summary,
                      ""]
        lines += [
            "## Throughput",
            "",
            "```",
            throughput_table(res, ratios),
            "```",
            "",
            "## Peak memory",
            "",
            "```",
            memory_table(res, ratios),
            "```",
            "",
            "## Targets",
            "",
        ]
        lines += ["* " + v for v in verdicts(res, ratios)]
    if icount_text:
        lines += ["", "## Instructions per op", "", icount_text]
    if notes:
        lines += ["", "## Notes", ""] + ["* " + n for n in notes]
    if plots:
        lines += ["", "## Plots", ""]
        for p in plots:
            lines += ["![%s](%s)" % (p[:-4], p), ""]
    text = re.sub(r"\n{3,}", "\n\n",
                  scrub("\n".join(lines).rstrip() + "\n", bin_dir))
    with open(os.path.join(report_dir, "performance.md"), "w") as f:
        f.write(text)
    log("wrote %s (and %d plots)" % (
        os.path.join(report_dir, "performance.md"),
        len(plots) + (1 if summary else 0)))


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 1)[1])
    ap.add_argument("--bin_dir", required=True,
                    help="bazel-bin: holds tools/workloads/* and "
                         "elfc/libelfc.so")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--instructions", action="store_true",
                    help="count instructions per op of the single-thread "
                         "rows under callgrind (alone, or with --full after "
                         "the timed runs)")
    ap.add_argument("--workloads", default="")
    ap.add_argument("--allocators", default="")
    ap.add_argument("--reps", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=0)
    ap.add_argument("--threads", default="")
    ap.add_argument("--report_dir", default="")
    ap.add_argument("--settle_seconds", type=float, default=90,
                    help="before timing, wait up to this long for the load "
                         "average to fall below half the CPUs (a build just "
                         "before the run raises it for a minute); then warn "
                         "if it has not")
    ap.add_argument("--allow_dirty", action="store_true",
                    help="write the report into the work tree even with "
                         "uncommitted changes (local use; the report says "
                         "so)")
    ap.add_argument("--extra", action="append", default=[],
                    metavar="NAME=LIB",
                    help="also run every workload with LD_PRELOAD=LIB under "
                         "the name NAME (e.g. a checked build of elfc); "
                         "reported against elfc, never counted as a peer")
    ap.add_argument("--label", action="append", default=[],
                    metavar="NAME=TEXT",
                    help="how the --extra build NAME was made, for the "
                         "report (default for elfc-checked: the checked "
                         "build's label)")
    ap.add_argument("--command", default="",
                    help="how this run was started, for the report")
    args = ap.parse_args()

    reps = args.reps or (5 if args.full else 3)
    seconds = args.seconds or (1.0 if args.full else 0.5)
    threads = thread_counts(args.full, args.threads)
    report_dir = os.path.abspath(args.report_dir) if args.report_dir else (
        os.path.join(ROOT, "info") if args.full else "")
    timed = args.full or not args.instructions
    notes, warnings = [], []

    # The verdict names its commit; in the work tree it must be that
    # commit's, not an edited tree's.
    commit, changed = tree_state()
    in_tree = bool(report_dir) and (
        report_dir == ROOT or report_dir.startswith(ROOT + os.sep))
    if changed and in_tree and not args.allow_dirty:
        sys.exit("harness: refusing to write %s from a work tree with "
                 "uncommitted changes (%s%s): commit them, or pass "
                 "--allow_dirty for a local look (the report then says "
                 "so)" % (os.path.relpath(report_dir, ROOT) +
                          "/performance.md", ", ".join(changed[:5]),
                          ", ..." if len(changed) > 5 else ""))
    if commit is None:
        commit_note = "unknown (not a git checkout)"
    elif changed:
        commit_note = "%s with uncommitted changes%s" % (
            commit, " (--allow_dirty)" if args.allow_dirty else "")
        notes.append("built from commit %s with uncommitted changes in %s" %
                     (commit, ", ".join(changed[:10])))
    else:
        commit_note = "%s (clean tree)" % commit

    elfc = os.path.abspath(os.path.join(args.bin_dir, "elfc/libelfc.so"))
    allocs = [("glibc", ""), ("elfc", elfc)] + [(n, p) for n, p, _ in PEERS]
    if args.allocators:
        wanted = args.allocators.split(",")
        unknown = set(wanted) - {a for a, _ in allocs}
        if unknown:
            ap.error("unknown allocators: %s" % ", ".join(sorted(unknown)))
        allocs = [(a, p) for a, p in allocs if a in wanted]
    labels = dict(DEFAULT_LABELS)
    for x in args.label:
        name, sep, text = x.partition("=")
        if not sep or not name or not text:
            ap.error("--label wants NAME=TEXT, got %r" % x)
        labels[name] = text
    extras = []
    for x in args.extra:
        name, sep, path = x.partition("=")
        if not sep or not name or not path:
            ap.error("--extra wants NAME=LIB, got %r" % x)
        if name in {a for a, _ in allocs}:
            ap.error("--extra name %s is already an allocator" % name)
        extras.append((name, os.path.abspath(path)))
    allocs += extras
    present = []
    for name, path in allocs:
        if path and not os.path.exists(path):
            note = "%s not installed (%s): skipped" % (
                name, labels.get(name, path) if name != "elfc"
                else "bazel-bin/elfc/libelfc.so")
            log("note: " + note)
            notes.append(note)
        else:
            present.append((name, path))
    allocs = present

    workloads = WORKLOADS
    if args.workloads:
        wanted = args.workloads.split(",")
        workloads = [w for w in WORKLOADS
                     if w.name in wanted or w.program in wanted]
        if not workloads:
            ap.error("no workload matches %s" % args.workloads)
    launcher = os.path.join(args.bin_dir, "tools/workloads/peak_rss")
    for path in [launcher] + [os.path.join(args.bin_dir, "tools/workloads",
                                           w.program)
                              for w in workloads if w.kind == "workload"]:
        if not os.access(path, os.X_OK):
            sys.exit("harness: %s not built (bazel build //tools/workloads:all)"
                     % path)
        why = check_plain_build(path)
        if why:
            sys.exit("harness: %s %s; rebuild it with plain `bazel build "
                     "//tools/workloads:all`" % (path, why))
    kept = []
    for w in workloads:
        if w.kind == "program" and not os.access(w.program, os.X_OK):
            note = "%s not installed (Debian package %s): row skipped" % (
                w.program, w.name)
            log("note: " + note)
            notes.append(note)
        else:
            kept.append(w)
    workloads = kept

    if timed:
        load_start, warning = settle(args.settle_seconds)
    else:
        load_start, warning = load_check("at the start of", timed=False)
    if warning:
        warn(warning)
        warnings.append(warning)

    scratch = tempfile.mkdtemp(prefix="harness-")
    try:
        programs = {}
        for w in workloads:
            if w.kind == "program":
                programs[w.name] = program_setup(w.name, args.full, scratch)

        combos = [(w, t) for w in workloads for t in row_threads(w, threads)]
        if not timed:
            combos = []
        res = Results([(w.name, t) for w, t in combos],
                      [a for a, _ in allocs], [n for n, _ in extras])
        total = len(combos) * len(allocs) * reps
        if combos:
            log("harness: %d rows x %d allocators x %d repetitions = %d runs "
                "of %.1f s (threads %s; real programs run their fixed "
                "input)" % (len(combos), len(allocs), reps, total, seconds,
                            ",".join(map(str, threads))))
        start = time.monotonic()
        meter = OtherWork()
        done = 0
        for rep in range(reps if combos else 0):
            for i, (w, t) in enumerate(combos):
                k = (rep + i) % len(allocs)
                for alloc, lib in allocs[k:] + allocs[:k]:
                    done += 1
                    key = (w.name, t, alloc)
                    try:
                        if w.kind == "program":
                            wargs, env, ops, _ = programs[w.name]
                            out, rss, wall = run_one(
                                launcher, [w.program] + wargs, lib, 300,
                                env, scratch)
                            res.outputs.setdefault(key, []).append(
                                hashlib.sha256(out.encode()).hexdigest())
                            rate = ops / wall
                        else:
                            out, rss, _ = run_one(
                                launcher,
                                [os.path.join(args.bin_dir, "tools/workloads",
                                              w.program)] + w.args +
                                ["--threads=%d" % t, "--seconds=%g" % seconds],
                                lib, 10 * seconds + 30)
                            rate = float(result_fields(out)["ops_per_sec"])
                        res.add(key, rate, rss)
                        status = "%8s ops/s %7.1f MiB" % (fmt_rate(rate),
                                                          rss / 1024)
                    except (RuntimeError, KeyError, ValueError) as e:
                        res.fail(key, str(e))
                        status = "FAILED: %s" % e
                    elapsed = time.monotonic() - start
                    eta = elapsed / done * (total - done)
                    log("[%d/%d] rep %d %s t=%d %s %s  (eta %dm%02ds)" % (
                        done, total, rep + 1, w.name, t, alloc, status,
                        eta // 60, eta % 60))
        elapsed = time.monotonic() - start
        # The timed runs' competing work and load, before any instruction
        # counting (one process at a time under callgrind).
        other = meter.cpus() if timed else None
        load_end = os.getloadavg()[0]

        check_outputs(res)

        icount_text = ""
        icount_note = ""
        if args.instructions:
            if shutil.which("valgrind") is None:
                sys.exit("harness: --instructions needs valgrind "
                         "(Debian: valgrind)")
            rows = [w for w in workloads if w.icount]
            if not rows:
                ap.error("--instructions: none of the chosen rows is "
                         "counted (single-thread workload rows only)")
            log("harness: instruction counts, %d rows x %d allocators x 2 "
                "runs under callgrind" % (len(rows), len(allocs)))
            counts = count_instructions(rows, allocs, args.bin_dir)
            table, iratios = instruction_table(rows, allocs, counts)
            iverdicts = instruction_verdicts(counts, iratios)
            icount_note = "instructions/op elfc vs fewest peer %s" % (
                "%.2fx geomean" % gmean(iratios) if iratios else "-")
            pair = [counts.get(("pair_latency", a))
                    for a in ("elfc", "tcmalloc")]
            if all(isinstance(x, float) for x in pair):
                icount_note += ", malloc/free pair elfc %.0f vs tcmalloc " \
                    "%.0f" % tuple(pair)
            icount_text = "\n".join(
                ["Instructions executed per op inside the workers "
                 "(`valgrind --tool=callgrind --collect-atstart=no "
                 "--toggle-collect=workloads::RunBody*`), the difference "
                 "between runs of N and 2N ops (`--threads=1 "
                 "--iterations=N`: %s) divided by N. Includes the "
                 "workload's own loop, PRNG and tag checks, the same under "
                 "every allocator." % ", ".join(
                     "%s %d" % (w.name, w.icount) for w in rows),
                 "", "```", table, "```", ""] +
                ["* " + v for v in iverdicts])
            print()
            print("Instructions per op (callgrind, single thread; lower is "
                  "better)")
            print(table)
            print()
            for v in iverdicts:
                print(v)
            for key, v in sorted(counts.items()):
                if isinstance(v, str):
                    notes.append("instructions %s under %s failed (%s)" % (
                        key[0], key[1], v))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    warning = other_work_check(other)
    if warning:
        warn(warning)
        warnings.append(warning)
    cpus = os.cpu_count() or 1
    load_note = "load %.2f at the start, %s%d CPUs%s" % (
        load_start, "other work %.2f CPUs during the run, " % other
        if other is not None else "", cpus,
        " (WARNING: busy machine; not a verdict)" if warnings else "")

    ratios = ratio_rows(res)
    summary = ""
    if combos:
        print()
        print("Throughput (ops/s, median of %d interleaved runs of %g s; "
              "+-N%% = spread to the min/max run; best = the fastest other "
              "allocator, glibc included; prodcons threads = "
              "producer/consumer pairs)" % (reps, seconds))
        print(throughput_table(res, ratios))
        print()
        print("Peak RSS (MiB, median; ru_maxrss of the process)")
        print(memory_table(res, ratios))
        print()
        for v in verdicts(res, ratios):
            print(v)
        if res.errors:
            print()
            print("Failed runs:")
            for (w, t, a), errs in sorted(res.errors.items()):
                print("  %s t=%d %s: %d failed, e.g. %s" % (
                    w, t, a, len(errs), errs[0]))
                notes.append("%s t=%d under %s: %d of %d runs failed (%s)" % (
                    w, t, a, len(errs), reps, errs[0]))
        print()
        print("%d runs in %.0f s; load average %.2f at the start, %.2f at "
              "the end (with the harness's own runs); other work used %s "
              "CPUs on average during the run (%d CPUs)" % (
                  total, elapsed, load_start, load_end,
                  "%.2f" % other if other is not None else "?", cpus))
        summary = summary_line(res, ratios, load_note)
        if icount_note:
            summary += "; " + icount_note
    else:
        summary = "SUMMARY: no timed runs; %s; %s" % (icount_note, load_note)
    for w in warnings:
        print("WARNING: " + w)
    print(summary)

    if report_dir:
        # The binaries were built from the tree as it was at the start; if
        # HEAD moved or files changed since, the figures are still the
        # start commit's, and the report says what changed.
        end_commit, end_changed = tree_state()
        if end_commit != commit:
            notes.append("HEAD moved from %s to %s during the run; the "
                         "figures are %s's (built before the run)" % (
                             commit, end_commit, commit))
        elif set(end_changed) - set(changed):
            notes.append("files changed during the run (%s); the figures "
                         "are from the tree as it was at the start" %
                         ", ".join(sorted(set(end_changed) -
                                          set(changed))[:5]))
        commands = []
        for w in workloads:
            if w.kind == "program":
                wargs, env, _, desc = programs[w.name]
                commands.append("%s%s  # %s: %s" % (
                    "".join("%s=%s " % kv for kv in sorted(env.items())),
                    command_line(w.program, wargs), w.name, desc))
                continue
            ts = row_threads(w, threads)
            if not ts:
                continue
            commands.append("bazel-bin/tools/workloads/%s  # %s, T = %s" % (
                command_line(w.program, w.args + [
                    "--threads=%s" % ("1" if ts == [1] else "T"),
                    "--seconds=%g" % seconds]),
                w.name, ",".join(map(str, ts))))
        for a, lib in allocs:
            if a == "elfc":
                lib = "bazel-bin/elfc/libelfc.so"
            elif a in {n for n, _ in extras}:
                lib = "<%s>" % labels.get(
                    a, "an extra build, %s" % os.path.basename(lib))
            commands.append("# %s: %s" % (
                a, "LD_PRELOAD=" + lib if lib else "no LD_PRELOAD"))
        mode = {"name": "full mode" if args.full else "quick mode",
                "command": args.command or shown_command(sys.argv[1:]),
                "threads": threads, "reps": reps,
                "seconds": seconds, "runs": total, "summary": summary}
        write_report(res, ratios, report_dir, mode, commands,
                     machine_description(commit_note),
                     ("%.2f" % load_start, "%.2f" % load_end,
                      "%.2f" % other if other is not None else "?"), elapsed,
                     notes, warnings, icount_text, args.bin_dir)
    return 1 if res.errors else 0


if __name__ == "__main__":
    sys.exit(main())
