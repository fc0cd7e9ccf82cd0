// The clock, the kernel's random bytes and the CPU count. See platform.h.
#include "elfmalloc/platform.h"

#include <sched.h>
#include <sys/random.h>
#include <time.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>

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
  cpu_set_t set;
  CPU_ZERO(&set);
  n = 1;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int c = CPU_COUNT(&set);
    if (c > 0) n = static_cast<std::size_t>(c);
  }
  cached.store(n, std::memory_order_relaxed);
  return n;
}

}  // namespace elfmalloc
