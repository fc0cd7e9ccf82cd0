// elfmalloc's operating-system queries that more than one component needs:
// a coarse monotonic clock (decay periods of the page allocators and of the
// large-block heap) and the number of CPUs the process may run on (sizing
// of bags and pools). One definition each, so that every component sees the
// same clock and the same CPU count. Mapping lives in //mmap_alloc, the
// futex lock in spin_lock.h, thread keys and fork hooks in thread_cache.cc
// and general_allocator.cc (their only users).
//
// Neither function allocates or takes a lock: both are safe inside malloc.
#ifndef ELFMALLOC_PLATFORM_H_
#define ELFMALLOC_PLATFORM_H_

#include <cstddef>
#include <cstdint>

namespace elfmalloc {

// Milliseconds on CLOCK_MONOTONIC_COARSE: a vDSO read of the last timer tick
// (1-4 ms resolution, no system call), which is all periods of hundreds of
// milliseconds need.
std::uint64_t CoarseMonotonicMs() noexcept;

// CPUs in the process's affinity mask (sched_getaffinity fills a stack set:
// one system call, no allocation, unlike sysconf(_SC_NPROCESSORS_ONLN),
// which may read /sys through stdio). At least 1. Computed once.
std::size_t AvailableCpus() noexcept;

}  // namespace elfmalloc

#endif  // ELFMALLOC_PLATFORM_H_
