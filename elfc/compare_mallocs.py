#!/usr/bin/python3
"""Runs //elfc:malloc_benchmark (the elfmalloc benchmark matrix through the C
API) under several allocators with LD_PRELOAD, interleaved, and prints the
median throughput of each and elfc's ratio to glibc and to the best peer.

  bazel build //elfc:malloc_benchmark //elfc:libelfc.so
  elfc/compare_mallocs.py [--reps=3] [--min_time=0.2] [--filter=REGEX]

Peers are Debian's packages (libjemalloc2, libtcmalloc-minimal4,
libmimalloc2.0); a missing one is skipped with a note. Every repetition runs
each allocator once, in a rotating order, so drift on a busy machine hits all
of them alike; the median over repetitions is reported.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

LIBDIR = "/usr/lib/x86_64-linux-gnu"
PEERS = [
    ("jemalloc", os.path.join(LIBDIR, "libjemalloc.so.2")),
    ("tcmalloc", os.path.join(LIBDIR, "libtcmalloc_minimal.so.4")),
    ("mimalloc", os.path.join(LIBDIR, "libmimalloc.so.2")),
]


def run_once(binary, preload, min_time, bench_filter):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = preload
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [binary, "--benchmark_min_time=%s" % min_time,
               "--benchmark_out_format=json", "--benchmark_out=" + out.name,
               "--benchmark_format=console"]
        if bench_filter:
            cmd.append("--benchmark_filter=" + bench_filter)
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        data = json.load(open(out.name))
    return {b["name"]: b["items_per_second"] for b in data["benchmarks"]
            if "items_per_second" in b}


def short(name):
    # BM_Pairs<Malloc>/16/real_time/threads:1 -> Pairs/16/t1
    kind = name.split("<")[0].replace("BM_", "")
    parts = name.split("/")
    size = int(parts[1])
    size_s = "%dK" % (size >> 10) if size >= 1024 else "%d" % size
    threads = parts[-1].split(":")[1]
    return "%s/%s/t%s" % (kind, size_s, threads)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin_dir", default="bazel-bin")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--min_time", default="0.2")
    ap.add_argument("--filter", default="")
    args = ap.parse_args()
    binary = os.path.join(args.bin_dir, "elfc/malloc_benchmark")
    elfc = os.path.abspath(os.path.join(args.bin_dir, "elfc/libelfc.so"))
    allocs = [("glibc", ""), ("elfc", elfc)]
    for name, path in PEERS:
        if os.path.exists(path):
            allocs.append((name, path))
        else:
            print("note: %s not installed (%s); skipped" % (name, path))
    results = {name: {} for name, _ in allocs}
    for rep in range(args.reps):
        order = allocs[rep % len(allocs):] + allocs[:rep % len(allocs)]
        for name, path in order:
            print("rep %d/%d: %s" % (rep + 1, args.reps, name),
                  file=sys.stderr, flush=True)
            for bench, ips in run_once(binary, path, args.min_time,
                                       args.filter).items():
                results[name].setdefault(bench, []).append(ips)
    names = [n for n, _ in allocs]
    peers = [n for n in names if n not in ("elfc",)]
    benches = list(results["glibc"].keys())
    header = "%-18s" % "M items/s" + "".join("%10s" % n for n in names)
    header += "%12s%12s" % ("elfc/glibc", "elfc/best")
    print(header)
    print("-" * len(header))
    ratios_glibc, ratios_best = [], []
    for b in benches:
        med = {n: statistics.median(results[n][b]) for n in names
               if b in results[n]}
        row = "%-18s" % short(b) + "".join(
            "%10.1f" % (med[n] / 1e6) if n in med else "%10s" % "-"
            for n in names)
        best = max(med[n] for n in peers if n in med)
        rg, rb = med["elfc"] / med["glibc"], med["elfc"] / best
        ratios_glibc.append(rg)
        ratios_best.append(rb)
        print(row + "%11.2fx%11.2fx" % (rg, rb))
    gm = lambda xs: statistics.geometric_mean(xs)
    print("-" * len(header))
    print("geometric mean: elfc/glibc %.2fx, elfc/best peer %.2fx "
          "(%d workloads, median of %d interleaved runs)" %
          (gm(ratios_glibc), gm(ratios_best), len(benches), args.reps))


if __name__ == "__main__":
    main()
