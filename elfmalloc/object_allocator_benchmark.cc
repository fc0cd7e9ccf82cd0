// Benchmarks for elfmalloc's object allocators against glibc malloc/free in
// the same run, with the reference's bin/bench item (16 bytes, [usize; 2])
// and its two active workloads:
//   Pairs:     allocate one object, free it (the cache-hit path);
//   Buffered:  each thread keeps a ring of 64K live objects (filled before
//              timing) and replaces ring[i % 64K] each iteration: a free of
//              an old object plus an allocation, so slabs fill, float, get
//              listed and are reused.
// 1 and 2 threads; each thread uses its own handle (MagazineAllocator,
// LocalAllocator) on one shared allocator. Items/s counts one alloc+free.
// slab_alloc's typed SlabAlloc<Item> (not thread-safe: one allocator per
// benchmark run, built before timing) runs at 1 thread only, with heap
// backing (BM_Slab*) and mmap backing (BM_SlabMmap*): the issue's "object
// allocators against slab_alloc at one thread". SlabAlloc caches freed
// objects constructed, so its Allocate never runs a constructor in the timed
// loop, whereas the elfmalloc handles value-construct every object.
//
// Run: bazel run //elfmalloc:object_allocator_benchmark -- --benchmark_min_time=0.2
// Compare each BM_Magazine* / BM_Local* line with the BM_Malloc* line of the
// same workload and thread count; absolute numbers depend on the machine.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "benchmark/benchmark.h"
#include "elfmalloc/object_allocator.h"
#include "slab_alloc/slab_alloc.h"

namespace elfmalloc {
namespace {

struct Item {
  std::size_t w[2];
};
static_assert(sizeof(Item) == 16);

constexpr std::size_t kRing = std::size_t{64} << 10;

// Shared by every benchmark thread; never destroyed (the process ends).
MagazineAllocator<Item>& Magazine() {
  static auto* a = new MagazineAllocator<Item>();
  return *a;
}
LocalAllocator<Item>& Local() {
  static auto* a = new LocalAllocator<Item>();
  return *a;
}

struct MallocHandle {
  Item* Allocate() noexcept {
    return static_cast<Item*>(std::malloc(sizeof(Item)));
  }
  void Deallocate(Item* p) noexcept { std::free(p); }
};

template <class H>
void Pairs(benchmark::State& state, H& h) {
  for (auto _ : state) {
    Item* p = h.Allocate();
    benchmark::DoNotOptimize(p);
    p->w[0] = 1;
    h.Deallocate(p);
  }
  state.SetItemsProcessed(state.iterations());
}

template <class H>
void Buffered(benchmark::State& state, H& h) {
  std::vector<Item*> ring(kRing);
  for (Item*& p : ring) {
    p = h.Allocate();
    p->w[0] = 1;
  }
  std::size_t i = 0;
  for (auto _ : state) {
    Item*& slot = ring[i++ % kRing];
    h.Deallocate(slot);
    slot = h.Allocate();
    benchmark::DoNotOptimize(slot);
    slot->w[0] = 1;
  }
  for (Item* p : ring) h.Deallocate(p);
  state.SetItemsProcessed(state.iterations());
}

void BM_MagazinePairs(benchmark::State& state) {
  auto h = Magazine().NewHandle();
  Pairs(state, h);
}
void BM_LocalPairs(benchmark::State& state) {
  auto h = Local().NewHandle();
  Pairs(state, h);
}
void BM_MallocPairs(benchmark::State& state) {
  MallocHandle h;
  Pairs(state, h);
}
void BM_SlabPairs(benchmark::State& state) {
  auto a = slab_alloc::SlabAllocBuilder<Item>::Default().Build();
  Pairs(state, a);
}
void BM_SlabMmapPairs(benchmark::State& state) {
  auto a = slab_alloc::SlabAllocBuilder<Item>::Default().BuildMmap();
  Pairs(state, a);
}
void BM_SlabBuffered(benchmark::State& state) {
  auto a = slab_alloc::SlabAllocBuilder<Item>::Default().Build();
  Buffered(state, a);
}
void BM_SlabMmapBuffered(benchmark::State& state) {
  auto a = slab_alloc::SlabAllocBuilder<Item>::Default().BuildMmap();
  Buffered(state, a);
}
void BM_MagazineBuffered(benchmark::State& state) {
  auto h = Magazine().NewHandle();
  Buffered(state, h);
}
void BM_LocalBuffered(benchmark::State& state) {
  auto h = Local().NewHandle();
  Buffered(state, h);
}
void BM_MallocBuffered(benchmark::State& state) {
  MallocHandle h;
  Buffered(state, h);
}

BENCHMARK(BM_MagazinePairs)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_LocalPairs)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_MallocPairs)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_SlabPairs)->Threads(1)->UseRealTime();
BENCHMARK(BM_SlabMmapPairs)->Threads(1)->UseRealTime();
BENCHMARK(BM_MagazineBuffered)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_LocalBuffered)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_MallocBuffered)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_SlabBuffered)->Threads(1)->UseRealTime();
BENCHMARK(BM_SlabMmapBuffered)->Threads(1)->UseRealTime();

}  // namespace
}  // namespace elfmalloc
