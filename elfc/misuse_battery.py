#!/usr/bin/env python3
"""The misuse battery: every heap misuse of elfc/misuse_battery.cc against
one or more allocators, each scenario in its own process under LD_PRELOAD,
classified by what the allocator did.

  misuse_battery.py --program=PATH --preload=[LABEL=]LIB ... [--markdown]
                    [--details] [--expected=FILE --expected-key=KEY]

--preload may be repeated (one column per allocator); LIB `none` runs the
program on glibc's malloc. Outcomes:

  stopped  the process died (abort, signal or non-zero exit) with a message
           from the allocator on stderr: the misuse was caught and reported
  warned   a message on stderr, but the process went on to the end
  crashed  the process died without a message (a fault somewhere later)
  silent   the process ran to the end without a word; `silent!` when it
           then also saw the heap hand out overlapping blocks (corruption)
  hung     no end within the per-scenario deadline

With --expected, the run fails (exit 1) if a scenario that FILE lists for
KEY (lines "KEY SCENARIO") is not `stopped` for the first --preload: the
file records what the allocator catches today, so a change that stops
catching one cannot land unnoticed. Newly stopped scenarios are reported
(add them to the file to keep them), except those listed as "varies
SCENARIO" (outcomes that depend on the address-space layout).

Used by //elfc:misuse_battery_test (libelfc.so),
//elfc:misuse_battery_checked_test (libelfc_checked.so) and
//elfc:misuse_battery_hardened_test (libelfc_hardened.so); the table in
info/reliability.md comes from a run against every allocator.
"""

import argparse
import os
import subprocess
import sys

DEADLINE_SECONDS = 20


def classify(program, preload, scenario):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload != "none":
        env["LD_PRELOAD"] = preload
    try:
        r = subprocess.run([program, scenario], env=env, capture_output=True,
                           timeout=DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        return "hung", ""
    out = r.stdout.decode(errors="replace")
    err = r.stderr.decode(errors="replace").strip()
    first = err.splitlines()[0] if err else ""
    if "MISUSE-SETUP-FAILED" in out:
        return "error", out.strip()
    if r.returncode == 0 and "MISUSE-SURVIVED" in out:
        if err:
            return "warned", first
        if "MISUSE-CORRUPTION" in out:
            return "silent!", out.split("MISUSE-CORRUPTION: ")[1].splitlines()[0]
        return "silent", ""
    how = ("signal %d" % -r.returncode if r.returncode < 0
           else "exit %d" % r.returncode)
    if err:
        return "stopped", first
    return "crashed", how


def check_preload(program, preload):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env["ELFC_PRELOAD_EXPECT"] = preload
    if preload != "none":
        env["LD_PRELOAD"] = preload
    r = subprocess.run([program, "--check"], env=env, capture_output=True)
    if r.returncode != 0:
        sys.exit("misuse_battery: %s is not the allocator of the program:\n%s"
                 % (preload, r.stderr.decode(errors="replace")))


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--program", required=True)
    ap.add_argument("--preload", action="append", required=True)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--details", action="store_true",
                    help="print each outcome's message or signal")
    ap.add_argument("--expected")
    ap.add_argument("--expected-key")
    args = ap.parse_args()
    program = os.path.abspath(args.program)

    columns = []
    for spec in args.preload:
        label, _, lib = spec.rpartition("=")
        lib = lib if lib == "none" else os.path.abspath(lib)
        columns.append((label or os.path.basename(lib), lib))
        check_preload(program, lib)

    listing = subprocess.run([program, "--list"], capture_output=True,
                             check=True).stdout.decode().splitlines()
    scenarios = [line.split("\t") for line in listing if line]
    results = {}
    for name, _ in scenarios:
        for label, lib in columns:
            results[(name, label)] = classify(program, lib, name)

    labels = [label for label, _ in columns]
    if args.markdown:
        print("| scenario | " + " | ".join(labels) + " |")
        print("|---|" + "---|" * len(labels))
        for name, what in scenarios:
            print("| `%s` (%s) | " % (name, what) + " | ".join(
                results[(name, l)][0] for l in labels) + " |")
        print("| **stopped** | " + " | ".join(
            "**%d**" % sum(results[(n, l)][0] == "stopped"
                           for n, _ in scenarios) for l in labels) + " |")
    else:
        width = max(len(n) for n, _ in scenarios)
        print("%-*s  %s" % (width, "scenario",
                            "  ".join("%-10s" % l for l in labels)))
        for name, _ in scenarios:
            print("%-*s  %s" % (width, name, "  ".join(
                "%-10s" % results[(name, l)][0] for l in labels)))
        print("%-*s  %s" % (width, "stopped", "  ".join(
            "%-10d" % sum(results[(n, l)][0] == "stopped"
                          for n, _ in scenarios) for l in labels)))
    if args.details:
        for name, _ in scenarios:
            for l in labels:
                outcome, detail = results[(name, l)]
                if detail:
                    print("%s / %s: %s: %s" % (name, l, outcome, detail))

    if not args.expected:
        return 0
    first = labels[0]
    expected = set()
    varies = set()  # "varies SCENARIO": never reported as newly stopped
    with open(args.expected) as f:
        for line in f:
            fields = line.split("#")[0].split()
            if len(fields) == 2 and fields[0] == args.expected_key:
                expected.add(fields[1])
            elif len(fields) == 2 and fields[0] == "varies":
                varies.add(fields[1])
    known = {n for n, _ in scenarios}
    unknown = sorted(expected - known)
    lost = sorted(n for n in expected & known
                  if results[(n, first)][0] != "stopped")
    gained = sorted(n for n in known - expected - varies
                    if results[(n, first)][0] == "stopped")
    if gained:
        print("misuse_battery: newly stopped (add them to %s as '%s NAME'): %s"
              % (os.path.basename(args.expected), args.expected_key,
                 " ".join(gained)))
    if unknown:
        print("FAIL: %s names unknown scenarios: %s"
              % (args.expected, " ".join(unknown)))
    for n in lost:
        print("FAIL: %s is no longer stopped by %s: %s %s"
              % (n, first, *results[(n, first)]))
    if unknown or lost:
        return 1
    print("PASS: all %d expected scenarios stopped by %s"
          % (len(expected), first))
    return 0


if __name__ == "__main__":
    sys.exit(main())
