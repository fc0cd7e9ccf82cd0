// Benchmarks for the general allocator against glibc malloc/free in the same
// run:
//   Pairs/<size>:  allocate one block, free it (the magazine-hit path);
//   Ring/<size>:   each thread keeps a ring of 64K live blocks (filled before
//                  timing) and replaces ring[i % 64K] each iteration;
//   Mixed:         the ring with sizes 16 B .. 4 KiB from a fixed sequence.
// 1 and 2 threads. Items/s counts one allocation + one free.
//
// Run: bazel run //elfmalloc:general_allocator_benchmark -- --benchmark_min_time=0.2
// Compare each BM_Elf* line with the BM_Malloc* line of the same workload,
// size and thread count; absolute numbers depend on the machine.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "benchmark/benchmark.h"
#include "elfmalloc/general_allocator.h"

namespace elfmalloc {
namespace {

constexpr std::size_t kRing = std::size_t{64} << 10;

struct Elf {
  static void* Alloc(std::size_t n) { return Allocate(n); }
  static void Free(void* p) { Deallocate(p); }
};
struct Malloc {
  static void* Alloc(std::size_t n) { return std::malloc(n); }
  static void Free(void* p) { std::free(p); }
};

template <class A>
void BM_Pairs(benchmark::State& state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    void* p = A::Alloc(n);
    benchmark::DoNotOptimize(p);
    static_cast<char*>(p)[0] = 1;
    A::Free(p);
  }
  state.SetItemsProcessed(state.iterations());
}

std::size_t MixedSize(std::size_t i) {
  return 16 + ((i * 2654435761u) >> 7) % 4080;
}

template <class A>
void BM_Ring(benchmark::State& state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  std::vector<void*> ring(kRing);
  for (std::size_t i = 0; i < kRing; ++i) {
    ring[i] = A::Alloc(n == 0 ? MixedSize(i) : n);
  }
  std::size_t i = 0;
  for (auto _ : state) {
    void*& slot = ring[i % kRing];
    A::Free(slot);
    slot = A::Alloc(n == 0 ? MixedSize(i) : n);
    benchmark::DoNotOptimize(slot);
    ++i;
  }
  for (void* p : ring) A::Free(p);
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK_TEMPLATE(BM_Pairs, Elf)->Arg(16)->Arg(1024)->Threads(1)->Threads(2);
BENCHMARK_TEMPLATE(BM_Pairs, Malloc)->Arg(16)->Arg(1024)->Threads(1)->Threads(2);
// Arg 0: mixed sizes.
BENCHMARK_TEMPLATE(BM_Ring, Elf)->Arg(16)->Arg(0)->Threads(1)->Threads(2);
BENCHMARK_TEMPLATE(BM_Ring, Malloc)->Arg(16)->Arg(0)->Threads(1)->Threads(2);

}  // namespace
}  // namespace elfmalloc
