// bagpipe_benchmark: throughput of Bagpipe over each queue type against the
// single queues, the Treiber stack, a mutex-guarded std::deque and
// moodycamel::ConcurrentQueue (with per-thread producer/consumer tokens, its
// fastest mode), at 1..NumCpus() threads.
//
// Workloads (items_per_second = operations per second; pushes and pops both
// count as operations):
//  * Pairs: every thread repeatedly pushes one item and then pops one
//    (retrying until a pop succeeds), as in the reference's "enqueue/dequeue
//    pairs". 2 operations per iteration.
//  * ProdCons: even-numbered threads only push, odd-numbered threads only pop
//    (spinning until they get an item); 1 operation per iteration. Needs an
//    even thread count, so it runs at 2, 4, ... threads.
// Each structure is a process-lifetime object shared by the threads of a run;
// per-thread state (Bagpipe handles, moodycamel tokens) is per run.
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <mutex>

#include "bagpipe/bagpipe.h"
#include "bagpipe/epoch.h"
#include "bagpipe/faa_queue.h"
#include "bagpipe/treiber_stack.h"
#include "bagpipe/yang_crummey_queue.h"
#include "benchmark/benchmark.h"
#include "concurrentqueue.h"

namespace bagpipe {
namespace {

template <class Q>
struct BagImpl {
  Bagpipe<Q> bag;
  struct Local {
    explicit Local(BagImpl& b) : h(b.bag.NewHandle()) {}
    void Push(std::uint64_t v) { h.Push(v); }
    bool TryPop(std::uint64_t* v) { return h.TryPop(v) == PopStatus::kOk; }
    typename Bagpipe<Q>::Handle h;
  };
};

template <class Q>
struct QueueImpl {
  Q q;
  struct Local {
    explicit Local(QueueImpl& i) : q(&i.q) {}
    void Push(std::uint64_t v) { q->Push(v); }
    bool TryPop(std::uint64_t* v) { return q->TryPop(v) == PopStatus::kOk; }
    Q* q;
  };
};

struct MutexDequeImpl {
  std::mutex mu;
  std::deque<std::uint64_t> d;
  struct Local {
    explicit Local(MutexDequeImpl& i) : m(&i) {}
    void Push(std::uint64_t v) {
      std::lock_guard<std::mutex> l(m->mu);
      m->d.push_back(v);
    }
    bool TryPop(std::uint64_t* v) {
      std::lock_guard<std::mutex> l(m->mu);
      if (m->d.empty()) return false;
      *v = m->d.front();
      m->d.pop_front();
      return true;
    }
    MutexDequeImpl* m;
  };
};

struct MoodycamelImpl {
  moodycamel::ConcurrentQueue<std::uint64_t> q;
  struct Local {
    explicit Local(MoodycamelImpl& i) : q(&i.q), pt(i.q), ct(i.q) {}
    void Push(std::uint64_t v) { q->enqueue(pt, v); }
    bool TryPop(std::uint64_t* v) { return q->try_dequeue(ct, *v); }
    moodycamel::ConcurrentQueue<std::uint64_t>* q;
    moodycamel::ProducerToken pt;
    moodycamel::ConsumerToken ct;
  };
};

// moodycamel without tokens (every call finds its implicit producer through a
// thread-id hash and scans producers to dequeue): the mode comparable to a
// shared queue without per-thread handles.
struct MoodycamelNoTokenImpl {
  moodycamel::ConcurrentQueue<std::uint64_t> q;
  struct Local {
    explicit Local(MoodycamelNoTokenImpl& i) : q(&i.q) {}
    void Push(std::uint64_t v) { q->enqueue(v); }
    bool TryPop(std::uint64_t* v) { return q->try_dequeue(*v); }
    moodycamel::ConcurrentQueue<std::uint64_t>* q;
  };
};

// BAGPIPE_BENCH_COLLECT_THRESHOLD=n runs with epoch collection threshold n
// (default 64) to study the reclamation trade-off: a smaller threshold keeps
// fewer FAA segments in limbo (warmer caches) but advances the epoch, i.e.
// calls membarrier(), more often.
const bool kThresholdSet = [] {
  if (const char* s = std::getenv("BAGPIPE_BENCH_COLLECT_THRESHOLD")) {
    epoch::SetCollectThresholdForTesting(
        static_cast<std::uint32_t>(std::strtoul(s, nullptr, 10)));
    return true;
  }
  return false;
}();

template <class Impl>
Impl& Instance() {
  static Impl* impl = new Impl();
  return *impl;
}

template <class Impl>
void BM_Pairs(benchmark::State& state) {
  typename Impl::Local local(Instance<Impl>());
  std::uint64_t i = 0;
  for (auto _ : state) {
    local.Push(i++);
    std::uint64_t v = 0;
    while (!local.TryPop(&v)) {
    }
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(2 * state.iterations());
}

template <class Impl>
void BM_ProdCons(benchmark::State& state) {
  typename Impl::Local local(Instance<Impl>());
  const bool producer = state.thread_index() % 2 == 0;
  std::uint64_t i = 0;
  for (auto _ : state) {
    if (producer) {
      local.Push(i++);
    } else {
      std::uint64_t v = 0;
      while (!local.TryPop(&v)) {
      }
      benchmark::DoNotOptimize(v);
    }
  }
  state.SetItemsProcessed(state.iterations());
}

using BagFaa = BagImpl<FaaQueue<std::uint64_t>>;
using BagYc = BagImpl<YangCrummeyQueue<std::uint64_t>>;
using BagTreiber = BagImpl<TreiberStack<std::uint64_t>>;
using SingleFaa = QueueImpl<FaaQueue<std::uint64_t>>;
using SingleYc = QueueImpl<YangCrummeyQueue<std::uint64_t>>;
using SingleTreiber = QueueImpl<TreiberStack<std::uint64_t>>;

const int kMaxThreads = static_cast<int>(NumCpus());

void PairThreads(benchmark::internal::Benchmark* b) {
  for (int t = 1; t <= kMaxThreads; ++t) b->Threads(t);
  b->UseRealTime();
}
void ProdConsThreads(benchmark::internal::Benchmark* b) {
  for (int t = 2; t <= (kMaxThreads < 2 ? 2 : kMaxThreads); t += 2) {
    b->Threads(t);
  }
  b->UseRealTime();
}

BENCHMARK_TEMPLATE(BM_Pairs, BagFaa)->Apply(PairThreads);
BENCHMARK_TEMPLATE(BM_Pairs, BagYc)->Apply(PairThreads);
BENCHMARK_TEMPLATE(BM_Pairs, BagTreiber)->Apply(PairThreads);
BENCHMARK_TEMPLATE(BM_Pairs, SingleFaa)->Apply(PairThreads);
BENCHMARK_TEMPLATE(BM_Pairs, SingleYc)->Apply(PairThreads);
BENCHMARK_TEMPLATE(BM_Pairs, SingleTreiber)->Apply(PairThreads);
BENCHMARK_TEMPLATE(BM_Pairs, MutexDequeImpl)->Apply(PairThreads);
BENCHMARK_TEMPLATE(BM_Pairs, MoodycamelImpl)->Apply(PairThreads);
BENCHMARK_TEMPLATE(BM_Pairs, MoodycamelNoTokenImpl)->Apply(PairThreads);

BENCHMARK_TEMPLATE(BM_ProdCons, BagFaa)->Apply(ProdConsThreads);
BENCHMARK_TEMPLATE(BM_ProdCons, BagYc)->Apply(ProdConsThreads);
BENCHMARK_TEMPLATE(BM_ProdCons, BagTreiber)->Apply(ProdConsThreads);
BENCHMARK_TEMPLATE(BM_ProdCons, SingleFaa)->Apply(ProdConsThreads);
BENCHMARK_TEMPLATE(BM_ProdCons, SingleYc)->Apply(ProdConsThreads);
BENCHMARK_TEMPLATE(BM_ProdCons, SingleTreiber)->Apply(ProdConsThreads);
BENCHMARK_TEMPLATE(BM_ProdCons, MutexDequeImpl)->Apply(ProdConsThreads);
BENCHMARK_TEMPLATE(BM_ProdCons, MoodycamelImpl)->Apply(ProdConsThreads);
BENCHMARK_TEMPLATE(BM_ProdCons, MoodycamelNoTokenImpl)->Apply(ProdConsThreads);

}  // namespace
}  // namespace bagpipe
