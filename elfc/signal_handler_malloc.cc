// elfc/signal_handler_malloc.cc: a signal handler that frees and allocates
// blocks while the thread it interrupted is inside malloc or free (run
// under LD_PRELOAD by //elfc:signal_handler_malloc_test and its checked and
// hardened variants).
//
// malloc and free are not async-signal-safe, yet programs call them from
// handlers (a profiler's timer, a logging handler that formats into a
// buffer it allocates). What an allocator can promise is the guarantee
// glibc's, jemalloc's and tcmalloc's fast paths give in practice: a handler
// that gives back what it takes (here: frees a block and allocates one of
// the same size, eight times) leaves the interrupted operation's state as
// it found it. elfc's magazines push and pop in the order that keeps that
// (elfmalloc/magazine_cache.h, MagazineHot), its slow paths block the
// magazine they change and send a handler's malloc and free to a stash
// (elfmalloc/thread_cache.h, "Signal handlers"), and the hardened build
// does the same for a handler inside any of its malloc or free
// (general_allocator.cc, HardenedSection). Before, the same loop without
// bursts handed one block to two callers within a few dozen interruptions
// (reported as a double free), and with the bursts, once the fast paths
// were safe, in 4 runs of 10 (a handler inside a refill).
//
// A 20 us timer (timer_create, CLOCK_MONOTONIC) interrupts a loop that
// keeps 32 blocks live, each tagged with its own address, and every 32
// operations allocates and frees a burst of 3,000 blocks (more than a
// magazine holds: refills and flushes); a tag that changed means the
// block was handed out twice. The loop runs until the handler has run
// 20,000 times x ELFC_STRESS_SCALE.
//
// What the default and checked libraries do not promise: a handler that
// interrupts a magazine's fast path between its test and its update and
// then reaches a slow path of the same class (thread_cache.h, "Signal
// handlers"). Here that is a malloc of the handler's class that starts at
// a full magazine while the handler's free then overflows it (the flush
// takes the entry the malloc is about to hand out): with the bursts in
// the handler's class, 1 run in about 500 reports a double free. Closing
// it takes a fast path that a handler can restart (Linux restartable
// sequences, as tcmalloc's per-CPU caches use) or a flag written on every
// fast path. So those libraries run with --burst_size in another class:
// the bursts' refills and flushes, which the handler interrupts, run in
// sections (and the handler's class never reaches a slow path once the
// warm-up has graduated its magazine: the loop and the handler each give
// back what they take, at a level at least 40 entries below the
// capacity). The hardened library, whose every malloc and free is a
// section, runs with the bursts in the handler's class.
//
// Usage: signal_handler_malloc [--burst_size=BYTES]   (default: 40, the
// handler's size)
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cstddef>
#include <cstdint>

#include "elfc/preload_test_util.h"

namespace {

using elfc::test::Log;

constexpr int kHandlerBlocks = 8;
constexpr int kLive = 32;
constexpr std::size_t kSize = 40;
// Blocks allocated and then freed together every kLive operations: more
// than a magazine of the class holds, so that the handler also interrupts
// refills and flushes.
constexpr int kBurst = 3000;
// Blocks of the handler's class allocated and freed before the timer
// starts: enough to take the class's magazine out of its nursery (past the
// shared-refill budget) and leave it more than half full.
constexpr int kWarmUp = 4000;

void* g_handler_blocks[kHandlerBlocks];
volatile sig_atomic_t g_handler_runs = 0;

void OnTimer(int) {
  const int saved_errno = errno;
  g_handler_runs = g_handler_runs + 1;
  for (void*& b : g_handler_blocks) {
    free(b);
    b = malloc(kSize);
  }
  errno = saved_errno;
}

std::uint64_t Tag(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) ^ 0x5a5a5a5aull;
}

}  // namespace

int main(int argc, char** argv) {
  elfc::test::CheckPreload("signal_handler_malloc");
  std::size_t burst_size = kSize;
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], "--burst_size=", 13) == 0) {
      char* end = nullptr;
      burst_size = strtoul(argv[i] + 13, &end, 10);
      ELFC_CHECK(*end == '\0' && burst_size >= sizeof(std::uint64_t),
                 "bad argument %s", argv[i]);
    } else {
      ELFC_CHECK(false, "unknown argument %s (usage: signal_handler_malloc "
                 "[--burst_size=BYTES])", argv[i]);
    }
  }
  static void* burst[kBurst];
  static void* warm_up[kWarmUp];
  elfc::test::StartWatchdog(120, "signal_handler_malloc");
  const long target = 20000L * elfc::test::StressScale();
  for (void*& b : warm_up) {
    b = malloc(kSize);
    ELFC_CHECK(b != nullptr, "malloc(%zu)", kSize);
  }
  for (void* b : warm_up) free(b);
  for (void*& b : g_handler_blocks) {
    b = malloc(kSize);
    ELFC_CHECK(b != nullptr, "malloc(%zu)", kSize);
  }
  struct sigaction sa = {};
  sa.sa_handler = &OnTimer;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ELFC_CHECK(sigaction(SIGALRM, &sa, nullptr) == 0, "errno %d", errno);
  sigevent ev = {};
  ev.sigev_notify = SIGEV_SIGNAL;
  ev.sigev_signo = SIGALRM;
  timer_t timer;
  ELFC_CHECK(timer_create(CLOCK_MONOTONIC, &ev, &timer) == 0, "errno %d",
             errno);
  itimerspec every = {};
  every.it_interval.tv_nsec = 20000;
  every.it_value.tv_nsec = 20000;
  ELFC_CHECK(timer_settime(timer, 0, &every, nullptr) == 0, "errno %d",
             errno);

  std::uint64_t* live[kLive] = {};
  long ops = 0;
  for (; g_handler_runs < target; ++ops) {
    const int k = static_cast<int>(ops % kLive);
    if (live[k] != nullptr) {
      if (live[k][0] != Tag(live[k])) {
        Log("signal_handler_malloc: FAIL: block %p handed out twice (after "
            "%ld operations, %ld interruptions)\n",
            static_cast<void*>(live[k]), ops,
            static_cast<long>(g_handler_runs));
        return 1;
      }
      free(live[k]);
    }
    live[k] = static_cast<std::uint64_t*>(malloc(kSize));
    ELFC_CHECK(live[k] != nullptr, "malloc(%zu)", kSize);
    live[k][0] = Tag(live[k]);
    if (k == 0) {
      for (void*& b : burst) {
        b = malloc(burst_size);
        ELFC_CHECK(b != nullptr, "malloc(%zu)", burst_size);
        static_cast<std::uint64_t*>(b)[0] = Tag(b);
      }
      for (void* b : burst) {
        if (static_cast<std::uint64_t*>(b)[0] != Tag(b)) {
          Log("signal_handler_malloc: FAIL: block %p handed out twice (in a "
              "burst, after %ld interruptions)\n",
              b, static_cast<long>(g_handler_runs));
          return 1;
        }
        free(b);
      }
    }
  }
  ELFC_CHECK(timer_delete(timer) == 0, "errno %d", errno);
  for (std::uint64_t* p : live) free(p);
  for (void* b : g_handler_blocks) free(b);
  Log("signal_handler_malloc: PASS (%ld malloc/free pairs, %ld "
      "interruptions, bursts of %zu-byte blocks)\n",
      ops, static_cast<long>(g_handler_runs), burst_size);
  return 0;
}
