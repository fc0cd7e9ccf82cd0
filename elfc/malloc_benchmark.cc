// The elfmalloc benchmark matrix (elfmalloc/benchmark_workloads.h: pairs,
// 64K-ring buffered pairs, producer-consumer; 16 B .. 256 KiB; 1 and 2
// threads) through the plain C API, malloc and free. This binary contains
// no allocator of its own: run it under each allocator with LD_PRELOAD
// (elfc/compare_mallocs.py does, interleaved, and prints the ratios), e.g.
//   LD_PRELOAD=bazel-bin/elfc/libelfc.so bazel-bin/elfc/malloc_benchmark
#include <cstddef>
#include <cstdlib>

#include "benchmark/benchmark.h"
#include "elfmalloc/benchmark_workloads.h"

namespace {

using elfmalloc::benchmark_workloads::BM_Buffered;
using elfmalloc::benchmark_workloads::BM_Pairs;
using elfmalloc::benchmark_workloads::BM_ProdCons;
using elfmalloc::benchmark_workloads::Sizes;

struct Malloc {
  static void* Alloc(std::size_t n) { return std::malloc(n); }
  static void Free(void* p) { std::free(p); }
};

BENCHMARK_TEMPLATE(BM_Pairs, Malloc)->Apply(Sizes);
BENCHMARK_TEMPLATE(BM_Buffered, Malloc)->Apply(Sizes);
BENCHMARK_TEMPLATE(BM_ProdCons, Malloc)->Apply(Sizes);

}  // namespace
