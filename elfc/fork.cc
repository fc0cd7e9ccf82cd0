// elfc/fork.cc: fork() while other threads allocate (run under
// LD_PRELOAD=libelfc.so by //elfc:fork_test).
//
// After fork() only the forking thread exists in the child; any allocator
// lock another thread held at that instant stays locked forever, and any
// structure it was half-way through updating stays half-updated. glibc's
// malloc takes all its locks in a prefork handler and releases (parent) or
// re-initialises (child) them afterwards; a replacement malloc must do the
// same, or the child deadlocks or corrupts its heap on its first malloc.
//
// Worker threads allocate and free continuously (sizes up to 256 KiB, with
// patterns checked on free) while the main thread and one of the workers
// fork, 200 times in all by default (x ELFC_STRESS_SCALE). Each child:
//   * checks and frees blocks allocated before the fork (a set the main
//     thread allocated at start-up, and the forking thread's own blocks),
//   * allocates, checks and frees blocks of many sizes,
//   * starts a thread that allocates and frees, and joins it,
//   * every 10th child forks a grandchild that allocates too,
//   * and exits 0 (by exit() or _exit(), alternately).
// Every 20th iteration the parent also posix_spawn()s /bin/true (vfork-like:
// no fork handlers run, the child must not need any).
//
// Each child runs under its own 10 s watchdog (exit status 124, reported by
// the parent as "its watchdog fired, i.e. it hung"); the parent also kills a
// child it has waited for 15 s, and the whole process runs under a watchdog,
// so a deadlock in the parent (a lock left taken by a prefork handler) fails
// the test instead of hanging CI. (Checked with a throwaway malloc wrapper
// that takes a global mutex and has no fork handlers: the test fails within
// ~10 s with "child of fork #N ... its watchdog fired".)
//
// With --forkers=K (default 1), K worker threads fork (concurrently with
// each other and with the main thread) while at least two more allocate:
// half of the forks are then made by the workers, the rest by the main
// thread. With --runs=N the program runs itself N times in a row as fresh
// processes (posix_spawn of /proc/self/exe, same arguments otherwise, so
// the preload and everything else are the same) and fails on the first run
// that fails or hangs (each run is killed after its own deadline): the
// "100 consecutive runs" of the long tier (tools/reliability_long.sh) is
// `fork --forkers=3 --runs=100`.
//
// Usage: fork [--forks=N] [--forkers=K] [--runs=N]
#include <signal.h>
#include <spawn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "elfc/preload_test_util.h"

extern char** environ;

namespace {

using elfc::test::CheckPattern;
using elfc::test::FillPattern;
using elfc::test::Log;
using elfc::test::PatternKey;
using elfc::test::Rng;

constexpr int kChildDeadlineSeconds = 10;

struct Block {
  void* p = nullptr;
  std::size_t size = 0;
  std::uint64_t key = 0;
};

// Fills small blocks entirely and big ones at both ends (enough to see
// corruption of block boundaries, cheap enough to keep the workers busy with
// malloc rather than memset).
constexpr std::size_t kEdge = 512;
void Fill(Block& b) {
  if (b.size <= 2 * kEdge) {
    FillPattern(b.p, b.size, b.key);
  } else {
    FillPattern(b.p, kEdge, b.key);
    FillPattern(static_cast<char*>(b.p) + b.size - kEdge, kEdge, ~b.key);
  }
}
void Check(const Block& b, const char* where) {
  std::size_t bad;
  if (b.size <= 2 * kEdge) {
    bad = CheckPattern(b.p, b.size, b.key);
  } else {
    bad = CheckPattern(b.p, kEdge, b.key);
    if (bad == SIZE_MAX) {
      bad = CheckPattern(static_cast<const char*>(b.p) + b.size - kEdge, kEdge,
                         ~b.key);
      if (bad != SIZE_MAX) bad += b.size - kEdge;
    }
  }
  ELFC_CHECK(bad == SIZE_MAX, "%s: block %p of %zu bytes corrupted at %zu",
             where, b.p, b.size, bad);
}

Block Allocate(Rng& rng, std::size_t max_large) {
  Block b;
  b.size = elfc::test::MixedSize(rng, max_large);
  b.p = malloc(b.size);
  ELFC_CHECK(b.p != nullptr, "malloc(%zu)", b.size);
  b.key = PatternKey(b.p, rng.Next());
  Fill(b);
  return b;
}

void Release(Block& b, const char* where) {
  if (b.p == nullptr) return;
  Check(b, where);
  free(b.p);
  b.p = nullptr;
}

// Allocated by main before any thread starts; only ever touched by children
// (which free their copy) and by main at the very end.
constexpr int kPreForkBlocks = 64;
Block g_prefork[kPreForkBlocks];

std::atomic<bool> g_stop{false};
std::atomic<std::uint64_t> g_forks{0};
std::atomic<std::uint64_t> g_spawns{0};
std::atomic<std::uint64_t> g_worker_ops{0};

void* ChildThread(void* arg) {
  Rng rng(reinterpret_cast<std::uintptr_t>(arg));
  Block blocks[32];
  for (int round = 0; round < 4; ++round) {
    for (Block& b : blocks) b = Allocate(rng, 256 * 1024);
    for (Block& b : blocks) Release(b, "child's thread");
  }
  return nullptr;
}

// Everything a child does; never returns.
[[noreturn]] void ChildMain(std::uint64_t n, Block* own, int own_count) {
  elfc::test::StartWatchdog(kChildDeadlineSeconds, "fork child");
  Rng rng(0xc41d0000 + n);
  // Blocks from before the fork: the start-up set and the forker's own.
  for (Block& b : g_prefork) Release(b, "child freeing a pre-fork block");
  for (int i = 0; i < own_count; ++i) {
    Release(own[i], "child freeing the forker's block");
  }
  Block blocks[64];
  for (Block& b : blocks) b = Allocate(rng, 512 * 1024);
  for (Block& b : blocks) Release(b, "child");
  pthread_t tid;
  ELFC_CHECK(pthread_create(&tid, nullptr, ChildThread,
                            reinterpret_cast<void*>(n)) == 0,
             "pthread_create in child %llu", static_cast<unsigned long long>(n));
  pthread_join(tid, nullptr);
  if (n % 10 == 0) {
    const pid_t grandchild = fork();
    ELFC_CHECK(grandchild >= 0, "fork in child");
    if (grandchild == 0) {
      Block b = Allocate(rng, 64 * 1024);
      Release(b, "grandchild");
      _exit(0);
    }
    int status = 0;
    ELFC_CHECK(waitpid(grandchild, &status, 0) == grandchild, "waitpid");
    ELFC_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "grandchild status %#x", status);
  }
  if (n % 2 == 0) exit(0);  // runs exit handlers in the child too
  _exit(0);
}

// Waits for `pid` with a deadline; fails the test if it hangs or fails.
void WaitChild(pid_t pid, std::uint64_t n, const char* forker) {
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    ELFC_CHECK(r >= 0, "waitpid");
    if (r == pid) {
      if (WIFSIGNALED(status)) {
        ELFC_CHECK(false, "child of fork #%llu (forked by %s) died of signal %d",
                   static_cast<unsigned long long>(n), forker,
                   WTERMSIG(status));
      }
      ELFC_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                 "child of fork #%llu (forked by %s) exited with status %d "
                 "(124: its watchdog fired, i.e. it hung)",
                 static_cast<unsigned long long>(n), forker,
                 WEXITSTATUS(status));
      return;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - start.tv_sec > kChildDeadlineSeconds + 5) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ELFC_CHECK(false,
                 "child of fork #%llu (forked by %s) hung for %d s: killed "
                 "(deadlock in the child after fork?)",
                 static_cast<unsigned long long>(n), forker,
                 kChildDeadlineSeconds + 5);
    }
    struct timespec pause = {0, 1000000};  // 1 ms
    nanosleep(&pause, nullptr);
  }
}

void ForkOnce(Block* own, int own_count, const char* forker) {
  const std::uint64_t n = g_forks.fetch_add(1);
  const pid_t pid = fork();
  ELFC_CHECK(pid >= 0, "fork #%llu failed", static_cast<unsigned long long>(n));
  if (pid == 0) ChildMain(n, own, own_count);
  WaitChild(pid, n, forker);
}

void SpawnTrue() {
  pid_t pid;
  char arg0[] = "true";
  char* argv[] = {arg0, nullptr};
  const int rc = posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ);
  ELFC_CHECK(rc == 0, "posix_spawn /bin/true: %d", rc);
  int status = 0;
  ELFC_CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
  ELFC_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "/bin/true status %#x", status);
  g_spawns.fetch_add(1);
}

struct WorkerArgs {
  int id;
  std::uint64_t forks;  // how many forks this worker does (0: none)
};

void* WorkerMain(void* arg) {
  const WorkerArgs* a = static_cast<const WorkerArgs*>(arg);
  Rng rng(0x0f0f0000ULL + static_cast<std::uint64_t>(a->id));
  constexpr int kRing = 128;
  Block ring[kRing];
  std::uint64_t forked = 0;
  std::uint64_t ops = 0;
  while (!g_stop.load(std::memory_order_relaxed) || forked < a->forks) {
    const std::size_t slot = rng.Below(kRing);
    Release(ring[slot], "worker");
    ring[slot] = Allocate(rng, 256 * 1024);
    ++ops;
    if (forked < a->forks && ops % 997 == 0) {
      ForkOnce(ring, kRing, "a worker");
      ++forked;
    }
  }
  for (Block& b : ring) Release(b, "worker at the end");
  g_worker_ops.fetch_add(ops);
  return nullptr;
}

}  // namespace

// The deadline of one whole run of this program with `total_forks` forks.
unsigned RunDeadlineSeconds(std::uint64_t total_forks) {
  return 60u + 2u * static_cast<unsigned>(kChildDeadlineSeconds) +
         static_cast<unsigned>(total_forks / 5);
}

// --runs=N: runs this program (without --runs) N times, one after the
// other, each as a fresh process with a deadline.
int RunRepeatedly(int argc, char** argv, int runs, std::uint64_t total_forks) {
  char* child_argv[64];
  int n = 0;
  for (int i = 0; i < argc && n < 63; ++i) {
    if (strncmp(argv[i], "--runs=", 7) != 0) child_argv[n++] = argv[i];
  }
  child_argv[n] = nullptr;
  const unsigned deadline = RunDeadlineSeconds(total_forks) + 10;
  for (int run = 1; run <= runs; ++run) {
    pid_t pid;
    const int rc = posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr,
                               child_argv, environ);
    ELFC_CHECK(rc == 0, "posix_spawn of run %d: %d", run, rc);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
      int status = 0;
      const pid_t r = waitpid(pid, &status, WNOHANG);
      ELFC_CHECK(r >= 0, "waitpid");
      if (r == pid) {
        ELFC_CHECK(!WIFSIGNALED(status), "run %d of %d died of signal %d",
                   run, runs, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        ELFC_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                   "run %d of %d exited with status %d (124: a watchdog "
                   "fired, i.e. it hung)",
                   run, runs, WEXITSTATUS(status));
        break;
      }
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      if (now.tv_sec - start.tv_sec > static_cast<time_t>(deadline)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        ELFC_CHECK(false, "run %d of %d hung for %u s: killed", run, runs,
                   deadline);
      }
      struct timespec pause = {0, 20000000};  // 20 ms
      nanosleep(&pause, nullptr);
    }
  }
  printf("fork: PASS %d consecutive runs, no failure and no hang\n", runs);
  return 0;
}

int main(int argc, char** argv) {
  elfc::test::CheckPreload("fork");
  const int scale = elfc::test::StressScale();
  std::uint64_t total_forks = 200 * static_cast<std::uint64_t>(scale);
  int forkers = 1;
  int runs = 0;
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], "--forks=", 8) == 0) {
      total_forks = strtoull(argv[i] + 8, nullptr, 10);
    } else if (strncmp(argv[i], "--forkers=", 10) == 0) {
      forkers = atoi(argv[i] + 10);
    } else if (strncmp(argv[i], "--runs=", 7) == 0) {
      runs = atoi(argv[i] + 7);
    }
  }
  ELFC_CHECK(forkers >= 1 && forkers <= 6, "--forkers must be 1 .. 6");
  fflush(stdout);
  if (runs > 0) return RunRepeatedly(argc, argv, runs, total_forks);
  // Everything in the parent (forks, waits) must finish in this time.
  elfc::test::StartWatchdog(RunDeadlineSeconds(total_forks), "fork (parent)");
  // No stdio buffer of the parent may be duplicated into children.
  fflush(stdout);

  Rng rng(0xf04c);
  for (Block& b : g_prefork) b = Allocate(rng, 128 * 1024);

  // Workers 0 .. forkers-1 fork; at least two more only allocate.
  constexpr int kMaxWorkers = 8;
  const int workers = forkers + 2 > 3 ? forkers + 2 : 3;
  const std::uint64_t worker_forks =
      forkers == 1 ? total_forks / 4 : total_forks / 2;
  const std::uint64_t main_forks = total_forks - worker_forks;
  pthread_t tids[kMaxWorkers];
  WorkerArgs args[kMaxWorkers];
  for (int i = 0; i < workers; ++i) {
    std::uint64_t mine = 0;
    if (i < forkers) {
      mine = worker_forks / static_cast<std::uint64_t>(forkers);
      if (i == 0) mine += worker_forks % static_cast<std::uint64_t>(forkers);
    }
    args[i] = {i, mine};
    ELFC_CHECK(pthread_create(&tids[i], nullptr, WorkerMain, &args[i]) == 0,
               "pthread_create");
  }
  Block own[16];
  for (std::uint64_t i = 0; i < main_forks; ++i) {
    // Churn the main thread's own blocks too, so it forks mid-activity.
    for (Block& b : own) {
      Release(b, "main");
      b = Allocate(rng, 64 * 1024);
    }
    ForkOnce(own, 16, "the main thread");
    if (i % 20 == 0) SpawnTrue();
  }
  g_stop.store(true);
  for (int i = 0; i < workers; ++i) pthread_join(tids[i], nullptr);
  for (Block& b : own) Release(b, "main at the end");
  for (Block& b : g_prefork) Release(b, "main at the end");
  ELFC_CHECK(g_forks.load() == total_forks, "forked %llu of %llu",
             static_cast<unsigned long long>(g_forks.load()),
             static_cast<unsigned long long>(total_forks));
  printf("fork: PASS %llu forks (%llu by the main thread, %llu by %s) "
         "while %d threads allocated (%llu operations), %llu posix_spawns\n",
         static_cast<unsigned long long>(total_forks),
         static_cast<unsigned long long>(main_forks),
         static_cast<unsigned long long>(worker_forks),
         forkers == 1 ? "a worker" : "several workers", workers,
         static_cast<unsigned long long>(g_worker_ops.load()),
         static_cast<unsigned long long>(g_spawns.load()));
  return 0;
}
