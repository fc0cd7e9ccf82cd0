#!/usr/bin/python3
"""Runs the allocator workloads side by side: every program of
//tools/workloads under elfc, glibc, jemalloc, tcmalloc and mimalloc
(LD_PRELOAD), interleaved and repeated, and prints throughput and peak RSS
tables with elfc's ratios and whether the performance targets are met.

  bazel build //elfc:libelfc.so //tools/workloads:all     (./run.sh does this)
  /usr/bin/python3 tools/harness.py --bin_dir=bazel-bin [--full] [...]

Modes:
  quick (default)  threads 1 and 2, 3 repetitions, 0.5 s runs (~2 minutes)
  --full           threads 1, 2, 4, ... and nproc, 5 repetitions, 1 s runs;
                   writes info/performance.md and info/perf_*.png
Filters and overrides: --workloads=threadtest-small,larson (names or program
names), --allocators=elfc,glibc, --reps=N, --seconds=S, --threads=1,2,
--report_dir=DIR (write the report in any mode). --extra=NAME=LIB runs a
further build under LD_PRELOAD (./run.sh --checked passes elfc's checked
build as elfc-checked) and reports its throughput against elfc's.

Peers are Debian's packages (libjemalloc2, libtcmalloc-minimal4,
libmimalloc2.0); a missing one is skipped with a note. glibc is the process
without LD_PRELOAD. Each repetition runs every (workload, threads) with every
allocator, in an order rotated from one run to the next, so drift on a busy
machine hits all allocators alike; medians over the repetitions are reported
with their spread. Throughput is each program's own RESULT line (ops_per_sec,
timed inside the program); peak RSS is the process's ru_maxrss from wait4,
measured from outside (by //tools/workloads:peak_rss, which starts each
program).
"""
import argparse
import datetime
import math
import os
import platform
import re
import shlex
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

# (name, program, arguments, single_thread). Threads and duration are added
# per run. See tools/workloads/README.md for what each does and what an op
# is.
WORKLOADS = [
    ("threadtest-small", "threadtest", ["--size=64", "--objects=10000"], False),
    ("threadtest-medium", "threadtest", ["--size=2048", "--objects=10000"],
     False),
    ("shbench-small", "shbench",
     ["--min_size=8", "--max_size=64", "--slots=1000"], False),
    ("shbench-medium", "shbench",
     ["--min_size=64", "--max_size=4096", "--slots=1000"], False),
    ("prodcons", "prodcons",
     ["--min_size=16", "--max_size=256", "--batch=64", "--queue=64"], False),
    ("larson", "larson",
     ["--min_size=8", "--max_size=1000", "--slots=5000", "--rounds=20"],
     False),
    ("pair_latency", "pair_latency", ["--sizes=16,64,256,1024,4096"], True),
]

# The targets of the issue, checked at the end of every run.
TARGET_BEST_GMEAN = 1.0   # elfc / best peer throughput, geometric mean
TARGET_BEST_FLOOR = 0.8   # ... and no row below this
TARGET_RSS_GMEAN = 1.15   # elfc / glibc peak RSS, geometric mean, at most

RESULT_RE = re.compile(r"^RESULT (.*)$", re.M)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


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


def run_one(launcher, binary, args, preload, timeout):
    """Runs one program through the peak_rss launcher; returns (fields of its
    RESULT line, peak RSS in KiB) or raises RuntimeError with the reason.

    Peak RSS is the program's ru_maxrss from wait4, taken by peak_rss (a small
    C++ process) rather than here: Linux keeps a process's peak RSS across
    execve, so anything forked from this Python process would report at
    least Python's own footprint (~14 MiB)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    cmd = [launcher] + (["--preload=" + preload] if preload else []) + \
        [binary] + args
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        # Own session, so a hung run is killed with everything it started.
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL,
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
    lines = RESULT_RE.findall(stdout)
    if len(lines) != 1:
        raise RuntimeError("expected one RESULT line, got %d" % len(lines))
    rss = re.search(r"^PEAK_RSS_KIB=(\d+)$", stdout, re.M)
    if not rss:
        raise RuntimeError("no PEAK_RSS_KIB line from peak_rss")
    fields = dict(kv.split("=", 1) for kv in lines[0].split())
    return fields, int(rss.group(1))


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
    return "%.2f" % (x / 1e6) if x < 1e7 else "%.1f" % (x / 1e6)


class Results:
    """Measurements keyed by (workload, threads, allocator)."""

    def __init__(self, rows, allocs, extras=()):
        self.rows = rows        # [(workload, threads)]
        self.allocs = allocs    # [allocator name]
        self.extras = set(extras)  # --extra builds: compared with elfc only
        self.rate = {}          # key -> [ops/s]
        self.rss = {}           # key -> [KiB]
        self.errors = {}        # key -> [message]

    def add(self, key, rate, rss):
        self.rate.setdefault(key, []).append(rate)
        self.rss.setdefault(key, []).append(rss)

    def median(self, table, w, t, a):
        xs = table.get((w, t, a))
        return median_spread(xs) if xs else None


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
            "vs_best": e[0] / best[1] if best else None,
            "best": best[0] if best else None,
            "rss_vs_glibc": er[0] / gr[0] if (er and gr) else None,
        })
    return out


def throughput_table(res, ratios):
    by_row = {r["row"]: r for r in ratios}
    cols = res.allocs
    head = "%-18s %3s" % ("M ops/s", "thr") + "".join(
        "%15s" % a for a in cols) + "%11s%11s  %s" % ("elfc/glibc", "elfc/best",
                                                      "best peer")
    lines = [head, "-" * len(head)]
    for w, t in res.rows:
        cells = []
        for a in cols:
            m = res.median(res.rate, w, t, a)
            if m:
                cells.append("%15s" % ("%s +-%2.0f%%" % (fmt_rate(m[0]),
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
                "elfc throughput / best peer below %.1fx on %d of %d rows "
                "-> target 'no workload below %.1fx' MISSED: %s." % (
                    TARGET_BEST_FLOOR, len(low), len(best), TARGET_BEST_FLOOR,
                    ", ".join("%s t=%d %.2fx (best %s)" % (
                        r["row"][0], r["row"][1], r["vs_best"], r["best"])
                        for r in low)))
        else:
            out.append("elfc throughput / best peer: lowest %.2fx -> target "
                       "'no workload below %.1fx' MET." %
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
    else:
        out.append("glibc was not measured: memory target not checked.")
    return out


def command_line(program, args):
    return " ".join(shlex.quote(x) for x in [program] + args)


def machine_description():
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
    def git(*args):
        try:
            return subprocess.run(["git", "-C", ROOT] + list(args),
                                  capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "?"
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
        "commit": git("rev-parse", "--short", "HEAD") +
                  (" (with uncommitted changes)"
                   if git("status", "--porcelain") not in ("", "?") else ""),
    }


def make_plots(res, report_dir):
    """One PNG per workload: throughput and peak RSS against threads, one
    line per allocator. Returns the file names written."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("note: matplotlib not installed (Debian: python3-matplotlib); "
            "no plots")
        return []
    names = []
    for w in dict.fromkeys(w for w, _ in res.rows):
        threads = [t for ww, t in res.rows if ww == w]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
        for a in res.allocs:
            pts = [(t, res.median(res.rate, w, t, a),
                    res.median(res.rss, w, t, a)) for t in threads]
            pts = [p for p in pts if p[1]]
            if not pts:
                continue
            style = dict(marker="o", linewidth=2.5 if a == "elfc" else 1.2,
                         label=a)
            ax1.plot([p[0] for p in pts], [p[1][0] / 1e6 for p in pts],
                     **style)
            ax2.plot([p[0] for p in pts], [p[2][0] / 1024 for p in pts],
                     **style)
        for ax, title in ((ax1, "throughput (M ops/s, higher is better)"),
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


def write_report(res, ratios, report_dir, mode, commands, machine, load,
                 elapsed, notes):
    os.makedirs(report_dir, exist_ok=True)
    plots = make_plots(res, report_dir)
    lines = [
        "# Performance: elfc against glibc, jemalloc, tcmalloc and mimalloc",
        "",
        "Generated by `%s` on %s; every number below is "
        "that run's output. Do not edit by hand: rerun it." % (
            mode["command"], datetime.date.today().isoformat()),
        "",
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
        "| load average | %s at the start, %s at the end (other work on the "
        "machine shows as spread) |" % load,
        "",
        "## How it was measured",
        "",
        "%s: threads %s, %d interleaved repetitions, %g s per run; %d runs "
        "in %.0f s. Each repetition runs every (workload, threads) under every "
        "allocator in a rotated order. Throughput is the program's own "
        "`ops_per_sec` (ops per workload: see `tools/workloads/README.md`); "
        "peak RSS is `ru_maxrss` of the process (wait4, taken by "
        "`tools/workloads/peak_rss`, which starts each program). Cells are medians; "
        "`+-N%%` is the larger distance from the median to the fastest or "
        "slowest run. Peers are Debian's packages, preloaded; glibc is the "
        "process without `LD_PRELOAD`." % (
            mode["name"], ",".join(str(t) for t in mode["threads"]),
            mode["reps"], mode["seconds"], mode["runs"], elapsed),
        "",
        "Commands (each run with `LD_PRELOAD` set to the allocator's library, "
        "or unset for glibc; `T` = threads):",
        "",
        "```sh",
    ]
    lines += commands
    lines += [
        "```",
        "",
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
    if notes:
        lines += ["", "## Notes", ""] + ["* " + n for n in notes]
    if plots:
        lines += ["", "## Plots", ""]
        for p in plots:
            lines += ["![%s](%s)" % (p[:-4], p), ""]
    with open(os.path.join(report_dir, "performance.md"), "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    log("wrote %s (and %d plots)" %
        (os.path.join(report_dir, "performance.md"), len(plots)))


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 1)[1])
    ap.add_argument("--bin_dir", required=True,
                    help="bazel-bin: holds tools/workloads/* and "
                         "elfc/libelfc.so")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--workloads", default="")
    ap.add_argument("--allocators", default="")
    ap.add_argument("--reps", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=0)
    ap.add_argument("--threads", default="")
    ap.add_argument("--report_dir", default="")
    ap.add_argument("--extra", action="append", default=[],
                    metavar="NAME=LIB",
                    help="also run every workload with LD_PRELOAD=LIB under "
                         "the name NAME (e.g. a checked build of elfc); "
                         "reported against elfc, never counted as a peer")
    ap.add_argument("--command", default="",
                    help="how this run was started, for the report")
    args = ap.parse_args()

    reps = args.reps or (5 if args.full else 3)
    seconds = args.seconds or (1.0 if args.full else 0.5)
    threads = thread_counts(args.full, args.threads)
    report_dir = args.report_dir or (os.path.join(ROOT, "info")
                                     if args.full else "")
    notes = []

    elfc = os.path.abspath(os.path.join(args.bin_dir, "elfc/libelfc.so"))
    allocs = [("glibc", ""), ("elfc", elfc)] + [(n, p) for n, p, _ in PEERS]
    if args.allocators:
        wanted = args.allocators.split(",")
        unknown = set(wanted) - {a for a, _ in allocs}
        if unknown:
            ap.error("unknown allocators: %s" % ", ".join(sorted(unknown)))
        allocs = [(a, p) for a, p in allocs if a in wanted]
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
            note = "%s not installed (%s): skipped" % (name, path)
            log("note: " + note)
            notes.append(note)
        else:
            present.append((name, path))
    allocs = present

    workloads = WORKLOADS
    if args.workloads:
        wanted = args.workloads.split(",")
        workloads = [w for w in WORKLOADS if w[0] in wanted or w[1] in wanted]
        if not workloads:
            ap.error("no workload matches %s" % args.workloads)
    launcher = os.path.join(args.bin_dir, "tools/workloads/peak_rss")
    for path in [launcher] + [os.path.join(args.bin_dir, "tools/workloads", w[1])
                              for w in workloads]:
        if not os.access(path, os.X_OK):
            sys.exit("harness: %s not built (bazel build //tools/workloads:all)"
                     % path)
        why = check_plain_build(path)
        if why:
            sys.exit("harness: %s %s; rebuild it with plain `bazel build "
                     "//tools/workloads:all`" % (path, why))

    combos = [(w, t) for w in workloads
              for t in ([1] if w[3] else threads)]
    res = Results([(w[0], t) for w, t in combos], [a for a, _ in allocs],
                  [n for n, _ in extras])
    total = len(combos) * len(allocs) * reps
    log("harness: %d workload rows x %d allocators x %d repetitions = %d runs "
        "of %.1f s (threads %s)" % (len(combos), len(allocs), reps, total,
                                    seconds, ",".join(map(str, threads))))
    load_start = "%.2f" % os.getloadavg()[0]
    start = time.monotonic()
    done = 0
    for rep in range(reps):
        for i, ((name, program, wargs, _), t) in enumerate(combos):
            k = (rep + i) % len(allocs)
            for alloc, lib in allocs[k:] + allocs[:k]:
                done += 1
                binary = os.path.join(args.bin_dir, "tools/workloads", program)
                run_args = wargs + ["--threads=%d" % t, "--seconds=%g" % seconds]
                key = (name, t, alloc)
                try:
                    fields, rss = run_one(launcher, binary, run_args, lib,
                                          timeout=10 * seconds + 30)
                    rate = float(fields["ops_per_sec"])
                    res.add(key, rate, rss)
                    status = "%8s M/s %7.1f MiB" % (fmt_rate(rate), rss / 1024)
                except (RuntimeError, KeyError, ValueError) as e:
                    res.errors.setdefault(key, []).append(str(e))
                    status = "FAILED: %s" % e
                elapsed = time.monotonic() - start
                eta = elapsed / done * (total - done)
                log("[%d/%d] rep %d %s t=%d %s %s  (eta %dm%02ds)" % (
                    done, total, rep + 1, name, t, alloc, status,
                    eta // 60, eta % 60))
    elapsed = time.monotonic() - start
    load_end = "%.2f" % os.getloadavg()[0]

    ratios = ratio_rows(res)
    print()
    print("Throughput (millions of ops/s, median of %d interleaved runs of "
          "%g s; +-N%% = spread to the min/max run; best = the fastest "
          "other allocator, glibc included; prodcons threads = "
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
            print("  %s t=%d %s: %d failed, e.g. %s" % (w, t, a, len(errs),
                                                       errs[0]))
            notes.append("%s t=%d under %s: %d of %d runs failed (%s)" % (
                w, t, a, len(errs), reps, errs[0]))
    print()
    print("%d runs in %.0f s; load average %s at the start, %s at the end "
          "(%d CPUs)" % (total, elapsed, load_start, load_end,
                         os.cpu_count() or 0))

    if report_dir:
        commands = []
        for name, program, wargs, single in workloads:
            commands.append("bazel-bin/tools/workloads/%s  # %s, T = %s" % (
                command_line(program, wargs + [
                    "--threads=%s" % ("1" if single else "T"),
                    "--seconds=%g" % seconds]),
                name, "1" if single else ",".join(map(str, threads))))
        for a, lib in allocs:
            if a == "elfc":
                lib = "bazel-bin/elfc/libelfc.so"
            commands.append("# %s: %s" % (
                a, "LD_PRELOAD=" + lib if lib else "no LD_PRELOAD"))
        mode = {"name": "full mode" if args.full else "quick mode",
                "command": args.command or " ".join(
                    ["tools/harness.py"] + sys.argv[1:]), "threads": threads, "reps": reps,
                "seconds": seconds, "runs": total}
        write_report(res, ratios, report_dir, mode, commands,
                     machine_description(), (load_start, load_end), elapsed,
                     notes)
    return 1 if res.errors else 0


if __name__ == "__main__":
    sys.exit(main())
