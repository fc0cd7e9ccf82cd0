// Benchmarks for bsalloc against glibc malloc on the same sizes in the same
// run: an allocate/free pair (the cache-hit path for the two classes, an
// mmap/munmap pair for direct sizes) and a batch of 64 allocations followed by
// 64 frees (which overflows bsalloc's caches, so it also measures the miss
// path), on 1 and 2 threads. Sizes: 64 B and 4 KiB (small class), 24 KiB
// (medium), 256 KiB (direct; glibc also mmaps above its 128 KiB threshold
// until its dynamic threshold adapts).
//
// Run: bazel run -c opt //bsalloc:bsalloc_benchmark -- --benchmark_min_time=0.1
// Compare each BM_Bsalloc* line with the BM_Malloc* line of the same
// arguments; absolute numbers depend on the machine.
#include <cstddef>
#include <cstdlib>

#include "benchmark/benchmark.h"
#include "bsalloc/bsalloc.h"

namespace bsalloc {
namespace {

void BM_BsallocAllocFree(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    void* p = Allocate(size);
    benchmark::DoNotOptimize(p);
    static_cast<char*>(p)[0] = 1;
    Deallocate(p, size);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_MallocAllocFree(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    void* p = std::malloc(size);
    benchmark::DoNotOptimize(p);
    static_cast<char*>(p)[0] = 1;
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}

constexpr int kBatch = 64;

void BM_BsallocBatch(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  void* blocks[kBatch];
  for (auto _ : state) {
    for (void*& p : blocks) {
      p = Allocate(size);
      benchmark::DoNotOptimize(p);
      static_cast<char*>(p)[0] = 1;
    }
    for (void* p : blocks) Deallocate(p, size);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

void BM_MallocBatch(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  void* blocks[kBatch];
  for (auto _ : state) {
    for (void*& p : blocks) {
      p = std::malloc(size);
      benchmark::DoNotOptimize(p);
      static_cast<char*>(p)[0] = 1;
    }
    for (void* p : blocks) std::free(p);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

void Sizes(benchmark::internal::Benchmark* b) {
  for (int size : {64, 4096, 24 * 1024, 256 * 1024}) b->Arg(size);
  b->Threads(1)->Threads(2)->UseRealTime();
}

BENCHMARK(BM_BsallocAllocFree)->Apply(Sizes);
BENCHMARK(BM_MallocAllocFree)->Apply(Sizes);
BENCHMARK(BM_BsallocBatch)->Apply(Sizes);
BENCHMARK(BM_MallocBatch)->Apply(Sizes);

}  // namespace
}  // namespace bsalloc
