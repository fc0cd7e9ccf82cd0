// queue_test_util: exact-once accounting harnesses shared by bagpipe's tests.
//
// RunExactOnce starts P producers and C consumers. Producer p pushes the
// values p * kStride + i for i in [0, n) (blocking pushes); consumers pop
// until all P * n values have been taken, marking each value in a table. At
// the end every value must have been seen exactly once: nothing lost, nothing
// duplicated, no value that was never pushed. Optionally it also checks that
// every consumer saw each producer's values in increasing order, which any
// FIFO queue guarantees (a producer's pushes are ordered, and so are a
// consumer's pops).
#ifndef BAGPIPE_QUEUE_TEST_UTIL_H_
#define BAGPIPE_QUEUE_TEST_UTIL_H_

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

#include "bagpipe/bag.h"
#include "gtest/gtest.h"

namespace bagpipe {
namespace testing {

inline constexpr std::uint64_t kStride = std::uint64_t{1} << 32;

// Scale for the "larger run": 1 by default; smaller under sanitizers; the
// environment variable BAGPIPE_STRESS_SCALE multiplies it.
inline std::uint64_t LargeRunItems() {
#if defined(THREAD_SANITIZER) || defined(ADDRESS_SANITIZER)
  std::uint64_t n = 50'000;
#else
  std::uint64_t n = 500'000;
#endif
  if (const char* s = std::getenv("BAGPIPE_STRESS_SCALE")) {
    const long k = std::atol(s);
    if (k > 0) n *= static_cast<std::uint64_t>(k);
  }
  return n;
}

// `make_ops(thread_index)` returns an object (per thread) with
//   bool Push(std::uint64_t)  and  PopStatus TryPop(std::uint64_t*).
// Threads 0..P-1 are producers, P..P+C-1 consumers.
template <class MakeOps>
void RunExactOnce(int producers, int consumers, std::uint64_t per_producer,
                  MakeOps make_ops, bool check_fifo_per_producer) {
  const std::uint64_t total = per_producer * producers;
  std::vector<std::atomic<std::uint8_t>> seen(total);  // all 0
  std::atomic<std::uint64_t> popped{0};
  std::atomic<std::uint64_t> bogus{0};
  std::atomic<std::uint64_t> order_violations{0};
  std::atomic<std::uint64_t> push_failures{0};

  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      auto ops = make_ops(p);
      for (std::uint64_t i = 0; i < per_producer; ++i) {
        if (!ops.Push(p * kStride + i)) push_failures.fetch_add(1);
      }
    });
  }
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&, c] {
      auto ops = make_ops(producers + c);
      std::vector<std::int64_t> last(producers, -1);
      std::uint64_t spins = 0;
      while (popped.load(std::memory_order_relaxed) < total) {
        std::uint64_t v = 0;
        if (ops.TryPop(&v) != PopStatus::kOk) {
          if (++spins % 64 == 0) std::this_thread::yield();
          continue;
        }
        popped.fetch_add(1, std::memory_order_relaxed);
        const std::uint64_t p = v / kStride;
        const std::uint64_t i = v % kStride;
        if (p >= static_cast<std::uint64_t>(producers) || i >= per_producer) {
          bogus.fetch_add(1);
          continue;
        }
        seen[p * per_producer + i].fetch_add(1, std::memory_order_relaxed);
        if (static_cast<std::int64_t>(i) <= last[p]) {
          order_violations.fetch_add(1);
        }
        last[p] = static_cast<std::int64_t>(i);
      }
    });
  }
  for (auto& t : threads) t.join();

  EXPECT_EQ(push_failures.load(), 0u);
  EXPECT_EQ(bogus.load(), 0u);
  EXPECT_EQ(popped.load(), total);
  std::uint64_t lost = 0, duplicated = 0, first_bad = total;
  for (std::uint64_t i = 0; i < total; ++i) {
    const int k = seen[i].load();
    if (k == 0) ++lost;
    if (k > 1) ++duplicated;
    if (k != 1 && first_bad == total) first_bad = i;
  }
  EXPECT_EQ(lost, 0u) << "first bad index " << first_bad;
  EXPECT_EQ(duplicated, 0u) << "first bad index " << first_bad;
  if (check_fifo_per_producer) {
    EXPECT_EQ(order_violations.load(), 0u);
  }
}

// Adapts a shared queue (all threads use the same object).
template <class Q>
struct SharedQueueOps {
  Q* q;
  bool Push(std::uint64_t v) { return q->Push(v); }
  PopStatus TryPop(std::uint64_t* v) { return q->TryPop(v); }
};

}  // namespace testing
}  // namespace bagpipe

#endif  // BAGPIPE_QUEUE_TEST_UTIL_H_
