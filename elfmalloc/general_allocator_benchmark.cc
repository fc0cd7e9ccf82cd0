// Benchmarks for the general allocator (elfmalloc::Allocate / Deallocate)
// against glibc malloc/free in the same binary and the same run: the
// elfmalloc issue's benchmark matrix.
//
// The workloads (Pairs, Buffered with a 64K ring, ProdCons; Buffered/0 is
// the earlier mixed-size ring) are in benchmark_workloads.h, shared with
// //elfc:malloc_benchmark, which runs them through the C API under each
// allocator.
//
// Run: bazel run //elfmalloc:general_allocator_benchmark -- --benchmark_min_time=0.2
// Compare each BM_*<Elf> line with the BM_*<Malloc> line of the same
// workload, size and thread count; absolute numbers depend on the machine.
#include <cstddef>
#include <cstdlib>

#include "benchmark/benchmark.h"
#include "elfmalloc/benchmark_workloads.h"
#include "elfmalloc/general_allocator.h"

namespace elfmalloc {
namespace {

using benchmark_workloads::BM_Buffered;
using benchmark_workloads::BM_Pairs;
using benchmark_workloads::BM_ProdCons;
using benchmark_workloads::Sizes;

struct Elf {
  static void* Alloc(std::size_t n) { return Allocate(n); }
  static void Free(void* p) { Deallocate(p); }
};
struct Malloc {
  static void* Alloc(std::size_t n) { return std::malloc(n); }
  static void Free(void* p) { std::free(p); }
};

BENCHMARK_TEMPLATE(BM_Pairs, Elf)->Apply(Sizes);
BENCHMARK_TEMPLATE(BM_Pairs, Malloc)->Apply(Sizes);
BENCHMARK_TEMPLATE(BM_Buffered, Elf)->Apply(Sizes);
BENCHMARK_TEMPLATE(BM_Buffered, Malloc)->Apply(Sizes);
BENCHMARK_TEMPLATE(BM_ProdCons, Elf)->Apply(Sizes);
BENCHMARK_TEMPLATE(BM_ProdCons, Malloc)->Apply(Sizes);
// Arg 0: mixed sizes 16 B .. 4 KiB.
BENCHMARK_TEMPLATE(BM_Buffered, Elf)
    ->Arg(0)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_TEMPLATE(BM_Buffered, Malloc)
    ->Arg(0)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace
}  // namespace elfmalloc
