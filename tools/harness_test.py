#!/usr/bin/python3
"""Tests of tools/harness.py's verdict: the parts that decide what a report
says and whether it may be written, on synthetic measurements (the
workloads themselves are tested by //tools/workloads:*_smoke_test).

  * a report is refused from a work tree with uncommitted changes unless
    --allow_dirty, and allowed from a clean one;
  * a report never names a machine path (scrub, shown_command);
  * the summary line and the verdicts count the rows the targets name;
  * the load warning fires above half the CPUs only;
  * the real programs' inputs are deterministic and the row table is sound.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def results(rates, rss, allocs=("glibc", "elfc", "tcmalloc")):
    """Results with one run per (row, allocator): rates/rss map a row name
    to a tuple of values in the order of allocs."""
    rows = [(w, 1) for w in rates]
    res = harness.Results(rows, list(allocs))
    for w in rates:
        for a, rate, kib in zip(allocs, rates[w], rss[w]):
            res.add((w, 1, a), rate, kib)
    return res


class SummaryTest(unittest.TestCase):

    def test_counts_rows_against_the_targets(self):
        # elfc/best: a 1.0 (tcmalloc 2 vs 2), b 0.5 (glibc 4 vs 2).
        # RSS/glibc: a 1.0, b 2.0.
        res = results({"a": (1.0, 2.0, 2.0), "b": (4.0, 2.0, 1.0)},
                      {"a": (100, 100, 90), "b": (100, 200, 100)})
        ratios = harness.ratio_rows(res)
        line = harness.summary_line(res, ratios, "load 0.10 -> 0.20")
        self.assertTrue(line.startswith("SUMMARY: "))
        self.assertIn("elfc/best peer 0.71x geomean over 2 rows", line)
        self.assertIn("1 rows below 0.85x (b/1)", line)
        self.assertIn("peak RSS vs glibc 1.41x geomean", line)
        self.assertIn("1 rows above 1.30x (b/1)", line)
        self.assertTrue(line.endswith("load 0.10 -> 0.20"))
        text = "\n".join(harness.verdicts(res, ratios))
        self.assertIn("target >= 1.10x MISSED", text)
        self.assertIn("b t=1 0.50x (best glibc)", text)
        self.assertIn("'no row above 1.30x' MISSED: b t=1 2.00x", text)

    def test_met_targets(self):
        res = results({"a": (1.0, 3.0, 2.0)}, {"a": (100, 101, 150)})
        text = "\n".join(harness.verdicts(res, harness.ratio_rows(res)))
        self.assertIn("geometric mean 1.50x over 1 rows -> target >= 1.10x "
                      "MET", text)
        self.assertIn("'no row below 0.85x' MET", text)
        self.assertIn("target <= 1.05x MET", text)
        self.assertIn("'no row above 1.30x' MET", text)


class OutputsTest(unittest.TestCase):

    def test_a_program_whose_output_differs_fails(self):
        res = results({"sqlite3": (1.0, 2.0, 3.0)},
                      {"sqlite3": (10, 10, 10)})
        res.outputs = {("sqlite3", 1, "glibc"): ["a", "a"],
                       ("sqlite3", 1, "elfc"): ["a", "b"],
                       ("sqlite3", 1, "tcmalloc"): ["a", "a"]}
        harness.check_outputs(res)
        self.assertEqual(list(res.errors), [("sqlite3", 1, "elfc")])
        self.assertNotIn(("sqlite3", 1, "elfc"), res.rate)
        self.assertIn(("sqlite3", 1, "tcmalloc"), res.rate)
        # The row no longer counts elfc.
        self.assertEqual(harness.ratio_rows(res), [])

    def test_unstable_reference_fails(self):
        res = results({"perl": (1.0, 1.0, 1.0)}, {"perl": (1, 1, 1)})
        res.outputs = {("perl", 1, "glibc"): ["a", "b"]}
        harness.check_outputs(res)
        self.assertEqual(list(res.errors), [("perl", 1, "glibc")])


class LoadTest(unittest.TestCase):

    def test_warns_above_half_the_cpus(self):
        with mock.patch.object(os, "cpu_count", return_value=2), \
                mock.patch.object(os, "getloadavg",
                                  return_value=(1.5, 0, 0)):
            load, warning = harness.load_check("at the start of")
        self.assertEqual(load, 1.5)
        self.assertIn("exceeds half of the 2 CPUs", warning)
        with mock.patch.object(os, "cpu_count", return_value=2), \
                mock.patch.object(os, "getloadavg",
                                  return_value=(0.9, 0, 0)):
            self.assertIsNone(harness.load_check("at the start of")[1])
            # Instruction counts do not depend on the load: no warning.
            with mock.patch.object(os, "getloadavg",
                                   return_value=(5.0, 0, 0)):
                self.assertIsNone(harness.load_check("at", timed=False)[1])


    def test_other_work(self):
        with mock.patch.object(os, "cpu_count", return_value=2):
            self.assertIsNone(harness.other_work_check(0.9))
            self.assertIsNone(harness.other_work_check(None))
            self.assertIn("other work used 1.50 of the 2 CPUs",
                          harness.other_work_check(1.5))
        # Busy CPU time 10 s over 4 s of wall time, 6 s of it ours: other
        # work used 1 CPU.
        samples = iter([(100.0, 50.0, 1.0), (104.0, 60.0, 7.0)])
        with mock.patch.object(harness.OtherWork, "_sample",
                               side_effect=lambda: next(samples)):
            self.assertAlmostEqual(harness.OtherWork().cpus(), 1.0)
        # A busy child counts as ours (it is waited for).
        before = harness.OtherWork._sample()
        subprocess.run([sys.executable, "-c",
                        "import time\nt = time.process_time()\n"
                        "while time.process_time() - t < 0.3: pass"],
                       check=True)
        after = harness.OtherWork._sample()
        self.assertGreaterEqual(after[2] - before[2], 0.29)
        self.assertIsNotNone(after[1])

    def test_settle_waits_for_the_load_to_fall(self):
        loads = iter([3.0, 2.0, 0.5])
        with mock.patch.object(os, "cpu_count", return_value=2), \
                mock.patch.object(os, "getloadavg",
                                  side_effect=lambda: (next(loads), 0, 0)), \
                mock.patch.object(harness.time, "sleep"):
            load, warning = harness.settle(60, poll=0)
        self.assertEqual(load, 0.5)
        self.assertIsNone(warning)
        # Never quiet: gives up at the deadline and warns.
        with mock.patch.object(os, "cpu_count", return_value=2), \
                mock.patch.object(os, "getloadavg",
                                  return_value=(4.0, 0, 0)):
            load, warning = harness.settle(0.05, poll=0.01)
        self.assertEqual(load, 4.0)
        self.assertIn("exceeds half", warning)


class PathsTest(unittest.TestCase):

    def test_scrub_names_builds_by_label(self):
        bin_dir = os.path.join(tempfile.gettempdir(), "out", "bin")
        text = "LD_PRELOAD=%s/elfc/libelfc.so %s/tools/x" % (bin_dir,
                                                            harness.ROOT)
        self.assertEqual(harness.scrub(text, bin_dir),
                         "LD_PRELOAD=bazel-bin/elfc/libelfc.so tools/x")

    def test_scrub_refuses_a_scratch_path(self):
        with self.assertRaises(RuntimeError):
            harness.scrub("lib at %s/checked/libelfc.so" %
                          tempfile.gettempdir(), "bazel-bin")

    def test_shown_command_leaves_out_paths(self):
        shown = harness.shown_command([
            "--bin_dir=/x/bin", "--report_dir=/y", "--reps=2",
            "--extra=elfc-checked=/z/libelfc-checked.so"])
        self.assertEqual(shown, "tools/harness.py --reps=2 "
                                "--extra=elfc-checked=...")


class DirtyTreeTest(unittest.TestCase):
    """Runs a copy of the harness inside a scratch git repository."""

    def setUp(self):
        self.repo = tempfile.mkdtemp(prefix="harness-test-")
        os.makedirs(os.path.join(self.repo, "tools"))
        shutil.copy(harness.__file__.replace(".pyc", ".py"),
                    os.path.join(self.repo, "tools", "harness.py"))

        def git(*args):
            subprocess.run(["git", "-C", self.repo, "-c", "user.name=t",
                            "-c", "user.email=t@t"] + list(args), check=True,
                           capture_output=True)
        self.git = git
        git("init", "-q")
        git("add", "tools/harness.py")
        git("commit", "-q", "-m", "harness")

    def tearDown(self):
        shutil.rmtree(self.repo, ignore_errors=True)

    def run_harness(self, *args):
        # An empty --bin_dir: a run that passes the tree check stops at
        # "not built", before measuring anything.
        bin_dir = os.path.join(self.repo, "empty")
        os.makedirs(bin_dir, exist_ok=True)
        return subprocess.run(
            [sys.executable, os.path.join(self.repo, "tools", "harness.py"),
             "--bin_dir=" + bin_dir, "--workloads=larson"] + list(args),
            capture_output=True, text=True)

    def test_refuses_a_dirty_tree(self):
        with open(os.path.join(self.repo, "tools", "harness.py"), "a") as f:
            f.write("# an uncommitted edit\n")
        r = self.run_harness("--report_dir=" + os.path.join(self.repo, "info"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("refusing to write info/performance.md", r.stderr)
        self.assertIn("tools/harness.py", r.stderr)
        # --allow_dirty passes the check (and stops at the missing build).
        r = self.run_harness("--report_dir=" + os.path.join(self.repo, "info"),
                             "--allow_dirty")
        self.assertNotIn("refusing", r.stderr)
        self.assertIn("not built", r.stderr)
        # So does a report outside the tree, and no report at all.
        r = self.run_harness()
        self.assertNotIn("refusing", r.stderr)
        self.assertIn("not built", r.stderr)

    def test_clean_tree_passes(self):
        r = self.run_harness("--report_dir=" + os.path.join(self.repo, "info"))
        self.assertNotIn("refusing", r.stderr)
        self.assertIn("not built", r.stderr)


class InputsTest(unittest.TestCase):

    def test_program_inputs_are_deterministic(self):
        self.assertEqual(harness.sqlite_script(1200),
                         harness.sqlite_script(1200))
        script = harness.sqlite_script(1200)
        self.assertEqual(script.count("INSERT INTO items VALUES"), 3)
        for name in ("sqlite3", "python3", "python3-pymalloc", "perl"):
            a, b = tempfile.mkdtemp(), tempfile.mkdtemp()
            try:
                args_a = harness.program_setup(name, False, a)
                args_b = harness.program_setup(name, False, b)
                self.assertEqual(args_a, args_b)
                self.assertEqual(sorted(os.listdir(a)), sorted(os.listdir(b)))
                for f in os.listdir(a):
                    with open(os.path.join(a, f)) as fa, \
                            open(os.path.join(b, f)) as fb:
                        self.assertEqual(fa.read(), fb.read())
                self.assertGreater(args_a[2], 0)
            finally:
                shutil.rmtree(a)
                shutil.rmtree(b)

    def test_row_table(self):
        names = [w.name for w in harness.WORKLOADS]
        self.assertEqual(len(names), len(set(names)))
        for w in harness.WORKLOADS:
            self.assertIn(w.threads, ("all", "single", "multi"))
            if w.icount:
                # Instruction counts need a single-thread workload program.
                self.assertEqual(w.kind, "workload")
                self.assertNotEqual(w.threads, "multi")
        self.assertEqual(harness.row_threads(harness.WORKLOADS[0], [1, 2]),
                         [1, 2])
        multi = [w for w in harness.WORKLOADS if w.threads == "multi"][0]
        self.assertEqual(harness.row_threads(multi, [1, 2, 4]), [2, 4])


if __name__ == "__main__":
    unittest.main()
