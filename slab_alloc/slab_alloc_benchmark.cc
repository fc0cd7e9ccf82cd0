// Benchmarks: slab allocators against malloc/free and new/delete of the same
// size, 16 B to 4 KiB.
//
//  * Pair: one Allocate + Deallocate per iteration. One object is kept live
//    (as in the reference's benchmarks) so the slab never goes empty; the
//    "_EmptySlab" variant drops that, making every pair flip a slab between
//    empty and in-use (the slow path) as a worst case.
//  * Many: allocate 1000 objects, then free them all (slab fill and drain).
//  * Plain objects (no constructor): the slab allocator hands out raw
//    memory (NoInitialize), new/delete default-initialises (nothing to do).
//  * Constructed objects: a non-trivial constructor that writes every byte.
//    new/delete (and malloc + placement new) run it on every allocation; the
//    slab allocator runs it once per object slot and then hands out cached,
//    still-constructed objects: the constructor elision shows up as a ratio
//    growing with the object size.
//
// Numbers are only meaningful as ratios within one run (see README.md).
#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

#include "benchmark/benchmark.h"
#include "slab_alloc/slab_alloc.h"

namespace slab_alloc {
namespace {

template <std::size_t N>
struct Plain {
  unsigned char bytes[N];
};

template <std::size_t N>
struct Constructed {
  Constructed() noexcept {
    for (std::size_t i = 0; i < N; ++i) {
      bytes[i] = static_cast<unsigned char>(i * 7 + 1);
    }
  }
  unsigned char bytes[N];
};

constexpr int kMany = 1000;

template <class T>
auto MakeSlab() {
  if constexpr (std::is_trivially_default_constructible_v<T>) {
    return SlabAllocBuilder<T>::NoInitialize().Build();
  } else {
    return SlabAllocBuilder<T>::Default().Build();
  }
}

// --- pairs ---

template <class T>
void BM_Pair_Slab(benchmark::State& state) {
  auto alloc = MakeSlab<T>();
  T* keep = alloc.Allocate();
  for (auto _ : state) {
    T* p = alloc.Allocate();
    benchmark::DoNotOptimize(p);
    alloc.Deallocate(p);
  }
  alloc.Deallocate(keep);
}

template <class T>
void BM_Pair_Slab_EmptySlab(benchmark::State& state) {
  auto alloc = MakeSlab<T>();
  for (auto _ : state) {
    T* p = alloc.Allocate();
    benchmark::DoNotOptimize(p);
    alloc.Deallocate(p);
  }
}

template <class T>
void BM_Pair_Malloc(benchmark::State& state) {
  for (auto _ : state) {
    void* raw = std::malloc(sizeof(T));
    T* p = ::new (raw) T;  // Runs the constructor, if any.
    benchmark::DoNotOptimize(p);
    p->~T();
    std::free(raw);
  }
}

template <class T>
void BM_Pair_NewDelete(benchmark::State& state) {
  for (auto _ : state) {
    T* p = new T;
    benchmark::DoNotOptimize(p);
    delete p;
  }
}

// --- many ---

template <class T>
void BM_Many_Slab(benchmark::State& state) {
  auto alloc = MakeSlab<T>();
  std::vector<T*> ptrs(kMany);
  for (auto _ : state) {
    for (T*& p : ptrs) p = alloc.Allocate();
    benchmark::DoNotOptimize(ptrs.data());
    for (T* p : ptrs) alloc.Deallocate(p);
  }
  state.SetItemsProcessed(state.iterations() * kMany);
}

template <class T>
void BM_Many_Malloc(benchmark::State& state) {
  std::vector<T*> ptrs(kMany);
  for (auto _ : state) {
    for (T*& p : ptrs) p = ::new (std::malloc(sizeof(T))) T;
    benchmark::DoNotOptimize(ptrs.data());
    for (T* p : ptrs) {
      p->~T();
      std::free(p);
    }
  }
  state.SetItemsProcessed(state.iterations() * kMany);
}

template <class T>
void BM_Many_NewDelete(benchmark::State& state) {
  std::vector<T*> ptrs(kMany);
  for (auto _ : state) {
    for (T*& p : ptrs) p = new T;
    benchmark::DoNotOptimize(ptrs.data());
    for (T* p : ptrs) delete p;
  }
  state.SetItemsProcessed(state.iterations() * kMany);
}

#define SLAB_BENCH_SIZE(N)                                   \
  BENCHMARK_TEMPLATE(BM_Pair_Slab, Plain<N>);                \
  BENCHMARK_TEMPLATE(BM_Pair_Slab_EmptySlab, Plain<N>);      \
  BENCHMARK_TEMPLATE(BM_Pair_Malloc, Plain<N>);              \
  BENCHMARK_TEMPLATE(BM_Pair_NewDelete, Plain<N>);           \
  BENCHMARK_TEMPLATE(BM_Pair_Slab, Constructed<N>);          \
  BENCHMARK_TEMPLATE(BM_Pair_Malloc, Constructed<N>);        \
  BENCHMARK_TEMPLATE(BM_Pair_NewDelete, Constructed<N>);     \
  BENCHMARK_TEMPLATE(BM_Many_Slab, Plain<N>);                \
  BENCHMARK_TEMPLATE(BM_Many_Malloc, Plain<N>);              \
  BENCHMARK_TEMPLATE(BM_Many_NewDelete, Plain<N>);           \
  BENCHMARK_TEMPLATE(BM_Many_Slab, Constructed<N>);          \
  BENCHMARK_TEMPLATE(BM_Many_Malloc, Constructed<N>);        \
  BENCHMARK_TEMPLATE(BM_Many_NewDelete, Constructed<N>)

SLAB_BENCH_SIZE(16);
SLAB_BENCH_SIZE(64);
SLAB_BENCH_SIZE(256);
SLAB_BENCH_SIZE(1024);
SLAB_BENCH_SIZE(4096);

}  // namespace
}  // namespace slab_alloc
