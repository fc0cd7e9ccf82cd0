// elfc/signal_fork.cc: fork() from a signal handler that interrupted the
// same thread inside malloc, free, realloc or malloc_trim (run under
// LD_PRELOAD=libelfc.so by //elfc:signal_fork_test; modelled on glibc's
// malloc/tst-mallocfork2.c).
//
// POSIX lists fork() as async-signal-safe, so a program may call it from a
// handler that interrupted its own malloc. The allocator's pthread_atfork
// prepare handler then runs on a thread that may already hold one of the
// allocator's locks (the heap's init lock, the thread-heap registry lock, a
// fallback lock, the large-block heap lock). A prepare handler that simply
// takes every lock waits for itself forever: the parent hangs inside fork().
//
// The main thread allocates, reallocates and frees in a loop (slab sizes,
// large blocks that go through the large-block heap, malloc_trim, and
// blocks of classes it has never used, so that every slow path runs) while
// a sender process bombards it with SIGUSR1 and SIGUSR2 (the handler of one
// can interrupt the other's fork, and the first signals arrive while the
// sender's own fork() is still in its handlers). The handler forks; the child
// allocates, fills and frees a few small blocks and _exits; the parent waits
// for it. Every child runs under its own watchdog (exit status 124, reported
// by the parent), and the whole process under another, so a hang in either
// process fails the test instead of hanging CI.
//
// Usage: signal_fork [--forks=N] (default 1000 x ELFC_STRESS_SCALE)
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "elfc/preload_test_util.h"

namespace {

using elfc::test::Log;
using elfc::test::Rng;

constexpr unsigned kChildDeadlineSeconds = 10;

// Lock-free atomics: signal-safe, and a nested handler's update is not lost.
std::atomic<int> g_forks{0};
std::atomic<int> g_failures{0};

void WriteAll(const char* s) {
  std::size_t n = strlen(s);
  while (n > 0) {
    const ssize_t w = write(STDERR_FILENO, s, n);
    if (w <= 0) return;
    s += w;
    n -= static_cast<std::size_t>(w);
  }
}

void WriteNumber(int n) {
  char buf[16];
  char* e = buf + sizeof(buf) - 1;
  *e = '\0';
  char* b = e;
  unsigned u = n < 0 ? 0u : static_cast<unsigned>(n);
  do {
    *--b = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u != 0 && b > buf);
  WriteAll(b);
}

// Only async-signal-safe calls, apart from the child's malloc/free: those
// are what the test is about.
void OnSignal(int) {
  const int saved_errno = errno;
  const pid_t pid = fork();
  if (pid == 0) {
    alarm(kChildDeadlineSeconds);  // the inherited watchdog handler exits 124
    void* blocks[8];
    for (std::size_t i = 0; i < 8; ++i) {
      const std::size_t n = 16 + 40 * i;
      blocks[i] = malloc(n);
      if (blocks[i] == nullptr) _exit(3);
      memset(blocks[i], 0x5a, n);
    }
    for (void* b : blocks) free(b);
    _exit(0);
  }
  if (pid < 0) {
    WriteAll("FAILED: fork() in the signal handler failed\n");
    g_failures.fetch_add(1);
    errno = saved_errno;
    return;
  }
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  if (r != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    if (WIFEXITED(status) && WEXITSTATUS(status) == 124) {
      WriteAll("FAILED: a child forked from a signal handler hung (its "
               "watchdog fired)\n");
    } else {
      WriteAll("FAILED: a child forked from a signal handler ");
      WriteAll(WIFSIGNALED(status) ? "died of signal " : "exited with status ");
      WriteNumber(WIFSIGNALED(status) ? WTERMSIG(status)
                                      : WEXITSTATUS(status));
      WriteAll("\n");
    }
    g_failures.fetch_add(1);
  }
  g_forks.fetch_add(1);
  errno = saved_errno;
}

// The sender: a separate process (the test process stays single-threaded,
// as in glibc's test) that signals its parent at random short intervals
// until the parent kills it.
pid_t StartSender(pid_t target) {
  const pid_t pid = fork();
  ELFC_CHECK(pid >= 0, "fork of the sender: %s", strerror(errno));
  if (pid != 0) return pid;
  Rng rng(static_cast<std::uint64_t>(getpid()));
  for (;;) {
    // Mostly SIGUSR1; SIGUSR2 (same handler) may land while the SIGUSR1
    // handler is inside fork(): a fork nested in another's handlers.
    const int sig = rng.Below(4) == 0 ? SIGUSR2 : SIGUSR1;
    if (kill(target, sig) != 0) _exit(0);  // the parent is gone
    struct timespec ts = {0, static_cast<long>(50000 + rng.Below(250000))};
    nanosleep(&ts, nullptr);
    if (getppid() != target) _exit(0);
  }
}

// One round of the workload: every slow path the allocator has.
void Churn(Rng& rng, void** slots, std::size_t nslots) {
  const std::size_t i = rng.Below(nslots);
  free(slots[i]);
  slots[i] = nullptr;
  switch (rng.Below(16)) {
    case 0:  // a large block: the large-block heap and its lock
      slots[i] = malloc((std::size_t{1} << 20) + rng.Below(3u << 20));
      break;
    case 1:  // realloc across the slab / large boundary
      slots[i] = realloc(malloc(200000), 400000 + rng.Below(1u << 20));
      break;
    case 2:
      if (rng.Below(8) == 0) malloc_trim(0);  // every cache and lock
      slots[i] = malloc(rng.LogUniform(1, 4096));
      break;
    default:
      slots[i] = malloc(rng.LogUniform(1, 256 * 1024));
      break;
  }
  ELFC_CHECK(slots[i] != nullptr, "allocation failed: %s", strerror(errno));
  static_cast<char*>(slots[i])[0] = 1;
}

}  // namespace

int main(int argc, char** argv) {
  elfc::test::CheckPreload("signal_fork");
  long forks = 1000L * elfc::test::StressScale();
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], "--forks=", 8) == 0) {
      forks = strtol(argv[i] + 8, nullptr, 10);
    } else {
      Log("usage: %s [--forks=N]", argv[0]);
      return 2;
    }
  }
  ELFC_CHECK(forks > 0, "--forks must be positive");
  elfc::test::StartWatchdog(240, "signal_fork");

  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ELFC_CHECK(sigaction(SIGUSR1, &sa, nullptr) == 0, "sigaction");
  ELFC_CHECK(sigaction(SIGUSR2, &sa, nullptr) == 0, "sigaction");

  constexpr std::size_t kSlots = 64;
  void* slots[kSlots] = {};
  Rng rng(42);
  const pid_t sender = StartSender(getpid());
  std::uint64_t ops = 0;
  while (g_forks < forks && g_failures == 0) {
    Churn(rng, slots, kSlots);
    ++ops;
  }
  kill(sender, SIGKILL);
  waitpid(sender, nullptr, 0);
  for (void* p : slots) free(p);
  ELFC_CHECK(g_failures == 0, "%d of %d forks from the signal handler failed",
             g_failures.load(), g_forks.load());
  Log("signal_fork: PASS (%d forks from a signal handler during %llu "
      "allocation rounds)",
      g_forks.load(), static_cast<unsigned long long>(ops));
  return 0;
}
