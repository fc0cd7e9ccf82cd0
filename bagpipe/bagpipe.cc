// bagpipe.cc: the non-template parts of bagpipe.h.
#include "bagpipe/bagpipe.h"

#include <sched.h>
#include <unistd.h>

#include <cstddef>

namespace bagpipe {

std::size_t NumCpus() noexcept {
  // cpu_set_t lives on the stack and CPU_COUNT is a bit count: no allocation,
  // unlike std::thread::hardware_concurrency on some libcs.
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return static_cast<std::size_t>(n);
  }
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<std::size_t>(n) : 1;
}

}  // namespace bagpipe
