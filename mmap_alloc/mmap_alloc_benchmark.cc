// Benchmarks for mmap_alloc: what each primitive costs relative to the raw
// system calls it wraps, measured in the same run.
//
//   BM_MapUnmap / BM_RawMmapMunmap        wrapper overhead for 4 KiB, 64 KiB,
//                                         2 MiB (untouched: pure syscall cost);
//   BM_MapUnmapTouched                    the same with every page touched once;
//   BM_MapAligned / BM_MapUnmap(2 MiB)    the price of over-map-and-trim;
//   BM_CommitUncommit                     Commit (MADV_POPULATE_WRITE) then
//                                         Uncommit with DONTNEED or FREE, versus
//   BM_TouchUncommit                      faulting the pages in by writing.
//
// Run: bazel run -c opt //mmap_alloc:mmap_alloc_benchmark -- --benchmark_min_time=0.05
#include <sys/mman.h>

#include <cstddef>
#include <cstring>

#include "benchmark/benchmark.h"
#include "mmap_alloc/mmap_alloc.h"

namespace mmap_alloc {
namespace {

void Touch(void* p, std::size_t len) {
  auto* c = static_cast<volatile char*>(p);
  for (std::size_t i = 0; i < len; i += PageSize()) c[i] = 1;
}

void BM_MapUnmap(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    void* p = Map(size);
    benchmark::DoNotOptimize(p);
    if (p == nullptr || !Unmap(p, size)) state.SkipWithError("Map failed");
  }
}
BENCHMARK(BM_MapUnmap)->Arg(4 << 10)->Arg(64 << 10)->Arg(2 << 20);

void BM_RawMmapMunmap(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    benchmark::DoNotOptimize(p);
    if (p == MAP_FAILED || munmap(p, size) != 0) {
      state.SkipWithError("mmap failed");
    }
  }
}
BENCHMARK(BM_RawMmapMunmap)->Arg(4 << 10)->Arg(64 << 10)->Arg(2 << 20);

void BM_MapUnmapTouched(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    void* p = Map(size);
    if (p == nullptr) {
      state.SkipWithError("Map failed");
      break;
    }
    Touch(p, size);
    Unmap(p, size);
  }
}
BENCHMARK(BM_MapUnmapTouched)->Arg(4 << 10)->Arg(64 << 10)->Arg(2 << 20);

void BM_MapAligned(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  MapOptions options;
  options.align = std::size_t{2} << 20;
  for (auto _ : state) {
    void* p = Map(size, options);
    benchmark::DoNotOptimize(p);
    if (p == nullptr || !Unmap(p, size)) state.SkipWithError("Map failed");
  }
}
BENCHMARK(BM_MapAligned)->Arg(2 << 20);

void BM_CommitUncommit(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const auto mode = state.range(1) == 0 ? UncommitMode::kDontNeed
                                        : UncommitMode::kFree;
  void* p = Map(size);
  if (p == nullptr) {
    state.SkipWithError("Map failed");
    return;
  }
  for (auto _ : state) {
    if (!Commit(p, size) || !Uncommit(p, size, mode)) {
      state.SkipWithError("commit cycle failed");
      break;
    }
  }
  Unmap(p, size);
}
BENCHMARK(BM_CommitUncommit)
    ->ArgNames({"bytes", "free"})
    ->Args({64 << 10, 0})
    ->Args({64 << 10, 1})
    ->Args({2 << 20, 0})
    ->Args({2 << 20, 1});

void BM_TouchUncommit(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  void* p = Map(size);
  if (p == nullptr) {
    state.SkipWithError("Map failed");
    return;
  }
  for (auto _ : state) {
    Touch(p, size);
    Uncommit(p, size, UncommitMode::kDontNeed);
  }
  Unmap(p, size);
}
BENCHMARK(BM_TouchUncommit)->Arg(64 << 10)->Arg(2 << 20);

}  // namespace
}  // namespace mmap_alloc
