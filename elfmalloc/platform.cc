// The clock, the kernel's random bytes, the CPU count, sleeping, a detached
// thread and the SIGSEGV hook. See platform.h.
#include "elfmalloc/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iterator>

namespace elfmalloc {

std::uint64_t CoarseMonotonicMs() noexcept {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000 +
         static_cast<std::uint64_t>(ts.tv_nsec) / 1000000;
}

bool RandomBytes(void* buf, std::size_t n) noexcept {
  const int saved_errno = errno;  // malloc's callers see errno unchanged
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    const ssize_t got = getrandom(p, n, GRND_NONBLOCK);
    if (got < 0) {
      if (errno == EINTR) continue;
      errno = saved_errno;
      return false;
    }
    p += got;
    n -= static_cast<std::size_t>(got);
  }
  errno = saved_errno;
  return true;
}

std::size_t AvailableCpus() noexcept {
  // Racy first computation is harmless: every thread computes the same value.
  static std::atomic<std::size_t> cached{0};
  std::size_t n = cached.load(std::memory_order_relaxed);
  if (n != 0) return n;
  // The system call itself, which returns the bytes of the mask it wrote,
  // and a popcount of them: the C library's sched_getaffinity and
  // __sched_cpucount lie in parts of it that a program calling malloc
  // rarely runs otherwise, and the faults that map them mapped 64 KiB
  // neighbourhoods each (fault-around) into every process's resident set.
  std::uint64_t mask[1024 / 64] = {};
  n = 1;
  const long got = syscall(SYS_sched_getaffinity, 0, sizeof(mask), mask);
  if (got > 0) {
    std::size_t c = 0;
    const std::size_t words =
        (static_cast<std::size_t>(got) + sizeof(mask[0]) - 1) / sizeof(mask[0]);
    for (std::size_t i = 0; i < words && i < std::size(mask); ++i) {
      c += static_cast<std::size_t>(std::popcount(mask[i]));
    }
    if (c > 0) n = c;
  }
  cached.store(n, std::memory_order_relaxed);
  return n;
}

void SleepMs(std::uint64_t ms) noexcept {
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(ms / 1000);
  ts.tv_nsec = static_cast<long>(ms % 1000) * 1000000L;
  while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR) {
  }
}

bool MainThreadExited() noexcept {
  char path[64];
  const int len = std::snprintf(path, sizeof(path), "/proc/self/task/%ld/stat",
                                static_cast<long>(getpid()));
  if (len <= 0 || static_cast<std::size_t>(len) >= sizeof(path)) return false;
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  // "pid (comm) S ...": the state follows the last ')' (comm may hold
  // parentheses and spaces). 512 bytes hold it with any comm (16 bytes).
  char buf[512];
  const ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* close_paren = std::strrchr(buf, ')');
  return close_paren != nullptr && close_paren[1] == ' ' &&
         (close_paren[2] == 'Z' || close_paren[2] == 'X');
}

bool StartDetachedThread(void* (*fn)(void*), void* arg) noexcept {
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0) return false;
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, std::size_t{256} << 10);
  // The new thread inherits the creator's signal mask: block everything
  // around the creation.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t t;
  const bool ok = pthread_create(&t, &attr, fn, arg) == 0;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  return ok;
}

namespace {

// The installed handler and the disposition it replaced; written once by
// InstallFaultHandler before the handler can run, read by it.
FaultHandler g_fault_handler = nullptr;
struct sigaction g_previous_segv;

const void* FaultPc(const void* context) {
  const auto* uc = static_cast<const ucontext_t*>(context);
#if defined(__x86_64__)
  return reinterpret_cast<const void*>(uc->uc_mcontext.gregs[REG_RIP]);
#elif defined(__aarch64__)
  return reinterpret_cast<const void*>(uc->uc_mcontext.pc);
#else
  (void)uc;
  return nullptr;
#endif
}

void FaultTrampoline(int sig, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  g_fault_handler(info->si_addr, FaultPc(context));
  // Not ours: back to the previous disposition, if this handler is still
  // the installed one (a program's handler that chained to it stays). A
  // fault happens again when the instruction reruns; a signal somebody
  // sent would be lost, so it is raised again (blocked until this handler
  // returns).
  struct sigaction current;
  if (sigaction(SIGSEGV, nullptr, &current) == 0 &&
      (current.sa_flags & SA_SIGINFO) != 0 &&
      current.sa_sigaction == FaultTrampoline) {
    sigaction(SIGSEGV, &g_previous_segv, nullptr);
    if (info->si_code <= 0) raise(sig);
  }
  errno = saved_errno;
}

}  // namespace

bool InstallFaultHandler(FaultHandler handler) noexcept {
  struct sigaction current;
  if (sigaction(SIGSEGV, nullptr, &current) != 0) return false;
  if ((current.sa_flags & SA_SIGINFO) != 0 ||
      current.sa_handler != SIG_DFL) {
    return false;  // the program's own handler, or SIG_IGN
  }
  g_previous_segv = current;
  g_fault_handler = handler;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = FaultTrampoline;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  return sigaction(SIGSEGV, &sa, nullptr) == 0;
}

}  // namespace elfmalloc
