// Allocation workloads for Google Benchmark, templated on the allocator, shared
// by //elfmalloc:general_allocator_benchmark (elfmalloc's C++ API against
// glibc in one binary) and //elfc:malloc_benchmark (the C API, run under each
// allocator with LD_PRELOAD). A is any type with
//   static void* Alloc(std::size_t n);  static void Free(void* p);
//
// Workloads (real time; items/s counts one allocation plus one free):
//   BM_Pairs<A>/<size>:     allocate one block, write its first byte, free
//                           it (the front-end hit path).
//   BM_Buffered<A>/<size>:  each thread keeps a ring of 64K live blocks
//                           (filled before timing) and replaces
//                           ring[i % 64K] each iteration: free the old
//                           block, allocate a new one, write its first byte.
//                           At 256 KiB the ring spans 16 GiB of address
//                           space per thread; only the first page of each
//                           block is touched (~256 MiB resident per thread).
//                           Size 0: mixed sizes 16 B .. 4 KiB.
//   BM_ProdCons<A>/<size>:  producer-consumer. Each benchmark thread t
//                           allocates a batch of kBatch blocks (writing each
//                           first byte) and hands them to thread (t + 1) % n
//                           through that thread's mailbox, then frees
//                           everything waiting in its own mailbox, so every
//                           block is freed by a thread other than the one
//                           that allocated it. One iteration = one batch. At
//                           1 thread the mailbox is the thread's own: it
//                           degenerates to same-thread frees of batched
//                           blocks.
//
// The mailbox (Mailbox below) is a bounded single-producer single-consumer
// ring of pointers with acquire/release indices: thread t is its only
// consumer and thread (t - 1 + n) % n its only producer. It never allocates,
// and its cost (a few atomic loads/stores per batch of kBatch blocks, plus
// the cache-line transfer of the pointers) is the same for every allocator.
#ifndef ELFMALLOC_BENCHMARK_WORKLOADS_H_
#define ELFMALLOC_BENCHMARK_WORKLOADS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"

namespace elfmalloc {
namespace benchmark_workloads {

inline constexpr std::size_t kRing = std::size_t{64} << 10;
inline constexpr std::size_t kBatch = 64;
// Mailbox capacity in pointers (16 batches); bounds the blocks in flight
// (at 256 KiB: 256 MiB of address space per mailbox).
inline constexpr std::size_t kMailboxSlots = 16 * kBatch;
inline constexpr int kMaxThreads = 2;

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

inline std::size_t MixedSize(std::size_t i) {
  return 16 + ((i * 2654435761u) >> 7) % 4080;
}

// Buffered pairs; n == 0 means mixed sizes (the former BM_Ring/0).
template <class A>
void BM_Buffered(benchmark::State& state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  std::vector<void*> ring(kRing);
  for (std::size_t i = 0; i < kRing; ++i) {
    ring[i] = A::Alloc(n == 0 ? MixedSize(i) : n);
    static_cast<char*>(ring[i])[0] = 1;
  }
  std::size_t i = 0;
  for (auto _ : state) {
    void*& slot = ring[i % kRing];
    A::Free(slot);
    slot = A::Alloc(n == 0 ? MixedSize(i) : n);
    benchmark::DoNotOptimize(slot);
    static_cast<char*>(slot)[0] = 1;
    ++i;
  }
  for (void* p : ring) A::Free(p);
  state.SetItemsProcessed(state.iterations());
}

// Bounded SPSC pointer ring. Protocol: the producer writes slots
// [tail, tail + k) (only after seeing, with acquire, that head leaves room,
// so the consumer has finished reading them) and then publishes them with a
// release store of tail; the consumer reads tail with acquire, reads slots
// [head, tail) and releases them with a release store of head. Each index has
// exactly one writer, so plain load/store suffices (no RMW). Indices grow
// without bound; slot = index % kMailboxSlots.
struct alignas(64) Mailbox {
  alignas(64) std::atomic<std::size_t> head{0};  // written by the consumer
  alignas(64) std::atomic<std::size_t> tail{0};  // written by the producer
  // Set by the owner (consumer) thread's producer when it has left the timed
  // loop for good; reset by that producer before its loop.
  alignas(64) std::atomic<bool> producer_done{false};
  // Set by the owner (consumer) after the body of its last timed iteration;
  // reset by the owner before its loop. Google Benchmark ends the timed loop
  // with a barrier across threads, so a consumer that has finished cannot
  // drain until every thread has: a producer that finds the mailbox full
  // and this flag set frees its batch itself instead of waiting (else both
  // would wait forever). Affects at most the last few batches of a run.
  alignas(64) std::atomic<bool> consumer_leaving{false};
  void* slots[kMailboxSlots];

  bool TryPush(void* const* items, std::size_t k) {
    const std::size_t t = tail.load(std::memory_order_relaxed);
    if (t + k - head.load(std::memory_order_acquire) > kMailboxSlots) {
      return false;
    }
    for (std::size_t j = 0; j < k; ++j) slots[(t + j) % kMailboxSlots] = items[j];
    tail.store(t + k, std::memory_order_release);
    return true;
  }

  // Frees everything currently published; returns how many.
  template <class A>
  std::size_t Drain() {
    const std::size_t h = head.load(std::memory_order_relaxed);
    const std::size_t t = tail.load(std::memory_order_acquire);
    for (std::size_t j = h; j < t; ++j) A::Free(slots[j % kMailboxSlots]);
    head.store(t, std::memory_order_release);
    return t - h;
  }

  bool Empty() const {
    return head.load(std::memory_order_relaxed) ==
           tail.load(std::memory_order_acquire);
  }
};

// Indexed by benchmark thread. Every run leaves every mailbox empty (each
// consumer drains until its producer is done and nothing is left), so a run
// of one allocator never sees another allocator's pointers.
inline Mailbox g_mailboxes[kMaxThreads];

template <class A>
void BM_ProdCons(benchmark::State& state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  const int threads = state.threads();
  const int me = state.thread_index();
  if (threads > kMaxThreads) {
    state.SkipWithError("too many threads for the mailboxes");
    return;
  }
  Mailbox& mine = g_mailboxes[me];
  Mailbox& next = g_mailboxes[(me + 1) % threads];
  // I am next's only producer; the start barrier of the timed loop orders
  // this reset before next's consumer can look at it.
  next.producer_done.store(false, std::memory_order_relaxed);
  mine.consumer_leaving.store(false, std::memory_order_relaxed);
  void* batch[kBatch];
  benchmark::IterationCount done = 0;
  for (auto _ : state) {
    for (std::size_t j = 0; j < kBatch; ++j) {
      batch[j] = A::Alloc(n);
      static_cast<char*>(batch[j])[0] = 1;
    }
    benchmark::DoNotOptimize(batch);
    while (!next.TryPush(batch, kBatch)) {
      if (next.consumer_leaving.load(std::memory_order_acquire)) {
        for (void* p : batch) A::Free(p);  // see consumer_leaving
        break;
      }
      // next is behind: do my own consumer work meanwhile (so two full
      // mailboxes cannot deadlock), then let it run.
      if (mine.Drain<A>() == 0) std::this_thread::yield();
    }
    mine.Drain<A>();
    if (++done == state.max_iterations) {
      mine.consumer_leaving.store(true, std::memory_order_release);
    }
  }
  next.producer_done.store(true, std::memory_order_release);
  // Free whatever is still on its way to me (outside the timed region).
  while (!mine.producer_done.load(std::memory_order_acquire) || !mine.Empty()) {
    if (mine.Drain<A>() == 0) std::this_thread::yield();
  }
  state.SetItemsProcessed(state.iterations() *
                          static_cast<std::int64_t>(kBatch));
}

// The matrix: 16 B, 64 B, 1 KiB, 16 KiB, 256 KiB at 1 and 2 threads.
inline void Sizes(benchmark::internal::Benchmark* b) {
  for (std::int64_t s : {16, 64, 1024, 16 << 10, 256 << 10}) b->Arg(s);
  b->Threads(1)->Threads(2)->UseRealTime();
}

}  // namespace benchmark_workloads
}  // namespace elfmalloc

#endif  // ELFMALLOC_BENCHMARK_WORKLOADS_H_
