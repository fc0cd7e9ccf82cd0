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
// Usage: signal_handler_malloc
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
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

int main() {
  elfc::test::CheckPreload("signal_handler_malloc");
  static void* burst[kBurst];
  elfc::test::StartWatchdog(120, "signal_handler_malloc");
  const long target = 20000L * elfc::test::StressScale();
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
        b = malloc(kSize);
        ELFC_CHECK(b != nullptr, "malloc(%zu)", kSize);
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
      "interruptions)\n",
      ops, static_cast<long>(g_handler_runs));
  return 0;
}
