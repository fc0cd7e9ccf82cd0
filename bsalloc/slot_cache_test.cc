// Tests for bsalloc/slot_cache.h: the probe order, the capacity and patience
// bounds, the counters, and (multi-threaded, meant to run under TSan too) the
// exactly-once ownership hand-off and the release/acquire ordering of block
// contents.
#include "bsalloc/slot_cache.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace bsalloc {
namespace internal {
namespace {

// Fake blocks: the cache never dereferences what it stores, but the
// concurrency test does, so these are real objects.
struct alignas(64) Token {
  std::atomic<int> state{0};  // 0: owned by a thread, 1: parked in the cache
  std::uint64_t payload[6] = {};
};

std::uintptr_t HintFor(std::uint64_t i) {
  // Hints are stack addresses in real use; the low 12 bits are ignored.
  return static_cast<std::uintptr_t>(i * 0x1234567ull) << 12;
}

TEST(ProbeSequenceTest, EverySweepVisitsEverySlotExactlyOnce) {
  for (std::uint64_t h = 0; h < 2000; ++h) {
    ProbeSequence<32> probe(HintFor(h));
    EXPECT_EQ(probe.stride() % 2, 1u);
    std::set<std::size_t> seen;
    for (int i = 0; i < 32; ++i, probe.Next()) seen.insert(probe.index());
    EXPECT_EQ(seen.size(), 32u) << "hint " << h;
  }
  ProbeSequence<1> one(HintFor(7));
  EXPECT_EQ(one.index(), 0u);
  one.Next();
  EXPECT_EQ(one.index(), 0u);
}

TEST(ProbeSequenceTest, LowTwelveBitsOfTheHintDoNotMatter) {
  for (std::uintptr_t base = 0; base < (std::uintptr_t{1} << 30);
       base += 0x1357000) {
    ProbeSequence<32> a(base);
    ProbeSequence<32> b(base | 0xFFF);
    EXPECT_EQ(a.index(), b.index());
    EXPECT_EQ(a.stride(), b.stride());
  }
}

TEST(ProbeSequenceTest, HintsSpreadOverSlots) {
  // Thread stacks are 8 MiB apart by default: their start slots must differ.
  std::set<std::size_t> starts;
  for (std::uintptr_t i = 0; i < 64; ++i) {
    starts.insert(ProbeSequence<32>(0x7f0000000000 + i * (8 << 20)).index());
  }
  EXPECT_GE(starts.size(), 16u);
}

TEST(SlotCacheTest, EmptyCacheHasNothingToTake) {
  SlotCache<8> cache;
  EXPECT_EQ(cache.TryTake(HintFor(1)), nullptr);
  EXPECT_EQ(cache.TakeAny(), nullptr);
  EXPECT_EQ(cache.CachedBlocks(), 0u);
  EXPECT_EQ(cache.Takes(), 0u);
  EXPECT_EQ(cache.Puts(), 0u);
}

TEST(SlotCacheTest, TakeReturnsTheBlockPutWithTheSameHint) {
  SlotCache<8> cache;
  Token a, b;
  ASSERT_TRUE(cache.TryPut(&a, HintFor(1)));
  ASSERT_TRUE(cache.TryPut(&b, HintFor(1)));
  // Same probe order: the first slot holds `a`, so it comes back first.
  EXPECT_EQ(cache.TryTake(HintFor(1)), &a);
  EXPECT_EQ(cache.TryTake(HintFor(1)), &b);
  EXPECT_EQ(cache.TryTake(HintFor(1)), nullptr);
  EXPECT_EQ(cache.Puts(), 2u);
  EXPECT_EQ(cache.Takes(), 2u);
}

TEST(SlotCacheTest, HoldsExactlyKSlotsBlocksAndRejectsMore) {
  SlotCache<8> cache;
  Token tokens[9];
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(cache.TryPut(&tokens[i], HintFor(i * 31u))) << i;
    EXPECT_EQ(cache.CachedBlocks(), static_cast<std::size_t>(i + 1));
  }
  EXPECT_FALSE(cache.TryPut(&tokens[8], HintFor(5)));
  EXPECT_EQ(cache.Puts(), 8u);
  std::set<void*> taken;
  for (int i = 0; i < 8; ++i) {
    void* p = cache.TryTake(HintFor(1000 + i));
    ASSERT_NE(p, nullptr);
    taken.insert(p);
  }
  EXPECT_EQ(taken.size(), 8u);
  EXPECT_EQ(taken.count(&tokens[8]), 0u);
  EXPECT_EQ(cache.TryTake(HintFor(3)), nullptr);
  EXPECT_EQ(cache.CachedBlocks(), 0u);
}

TEST(SlotCacheTest, FullPatienceFindsABlockFromAnyHint) {
  // The reference gave up after kSlots / 4 probes and could miss a cached
  // block; with one full sweep a single cached block is always found.
  for (std::uint64_t put_hint = 0; put_hint < 50; ++put_hint) {
    for (std::uint64_t take_hint = 0; take_hint < 50; ++take_hint) {
      SlotCache<32> cache;
      Token t;
      ASSERT_TRUE(cache.TryPut(&t, HintFor(put_hint)));
      ASSERT_EQ(cache.TryTake(HintFor(take_hint + 77)), &t);
    }
  }
}

TEST(SlotCacheTest, LimitedPatienceStopsProbing) {
  SlotCache<8, 1> cache;
  Token a, b;
  const std::uintptr_t h = HintFor(3);
  ASSERT_TRUE(cache.TryPut(&a, h));
  // One probe only: the hint's first slot is taken, so the put gives up even
  // though seven slots are free.
  EXPECT_FALSE(cache.TryPut(&b, h));
  // A hint whose first slot differs cannot find `a`.
  std::uintptr_t other = 0;
  for (std::uint64_t i = 4;; ++i) {
    if (ProbeSequence<8>(HintFor(i)).index() != ProbeSequence<8>(h).index()) {
      other = HintFor(i);
      break;
    }
  }
  EXPECT_EQ(cache.TryTake(other), nullptr);
  EXPECT_EQ(cache.TryTake(h), &a);
}

TEST(SlotCacheTest, TakeAnyDrainsEverything) {
  SlotCache<4> cache;
  Token tokens[4];
  for (Token& t : tokens) ASSERT_TRUE(cache.TryPut(&t, HintFor(9)));
  std::set<void*> drained;
  while (void* p = cache.TakeAny()) drained.insert(p);
  EXPECT_EQ(drained.size(), 4u);
  EXPECT_EQ(cache.CachedBlocks(), 0u);
  // TakeAny is for draining; it does not count as a hit.
  EXPECT_EQ(cache.Takes(), 0u);
}

TEST(SlotCacheTest, IsConstantInitialisable) {
  static constinit SlotCache<16> cache;
  Token t;
  EXPECT_TRUE(cache.TryPut(&t, HintFor(1)));
  EXPECT_EQ(cache.TakeAny(), &t);
}

// Threads pass tokens through one cache. Each token's `state` (relaxed, so it
// orders nothing) detects a token handed to two owners; the plain `payload`
// words, written by each owner before parking and checked by the next owner,
// are a data race unless the cache's put/take are release/acquire: TSan
// reports it if either order is weakened to relaxed.
TEST(SlotCacheTest, ConcurrentHandOffIsExactlyOnceAndOrdersContents) {
  constexpr int kThreads = 4;
  constexpr int kTokensPerThread = 16;
  const int iterations = std::getenv("BSALLOC_STRESS") ? 200000 : 20000;
  static SlotCache<8> cache;  // static: TSan-friendly, like the real globals
  std::vector<Token> tokens(kThreads * kTokensPerThread);
  std::atomic<int> duplicate_takes{0};
  std::atomic<int> corrupt_payloads{0};
  std::vector<std::vector<Token*>> owned(kThreads);

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<Token*>& mine = owned[t];
      for (int i = 0; i < kTokensPerThread; ++i) {
        Token* tok = &tokens[t * kTokensPerThread + i];
        for (std::uint64_t& w : tok->payload) w = 0;
        mine.push_back(tok);
      }
      // Distinct hints per thread, as distinct stacks would give.
      const std::uintptr_t hint = HintFor(static_cast<std::uint64_t>(t) + 1);
      std::uint64_t rng = 0x9E3779B97F4A7C15ull * (t + 1);
      for (int it = 0; it < iterations; ++it) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        const bool put = !mine.empty() && (rng & 1);
        if (put) {
          Token* tok = mine.back();
          const std::uint64_t stamp =
              (static_cast<std::uint64_t>(t) << 32) | static_cast<unsigned>(it);
          for (std::uint64_t& w : tok->payload) w = stamp;
          tok->state.store(1, std::memory_order_relaxed);
          if (cache.TryPut(tok, hint ^ (rng & 0x3000))) {
            mine.pop_back();
          } else {
            tok->state.store(0, std::memory_order_relaxed);
          }
        } else {
          auto* tok = static_cast<Token*>(cache.TryTake(hint ^ (rng & 0x3000)));
          if (tok == nullptr) continue;
          int expected = 1;
          if (!tok->state.compare_exchange_strong(expected, 0,
                                                  std::memory_order_relaxed)) {
            duplicate_takes.fetch_add(1);
          }
          const std::uint64_t first = tok->payload[0];
          for (std::uint64_t w : tok->payload) {
            if (w != first) corrupt_payloads.fetch_add(1);
          }
          mine.push_back(tok);
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();

  EXPECT_EQ(duplicate_takes.load(), 0);
  EXPECT_EQ(corrupt_payloads.load(), 0);
  // Every token is either owned by exactly one thread or parked, never both,
  // never neither.
  std::multiset<Token*> all;
  for (auto& mine : owned) {
    for (Token* tok : mine) {
      EXPECT_EQ(tok->state.load(), 0);
      all.insert(tok);
    }
  }
  std::uint64_t drained = 0;
  while (void* p = cache.TakeAny()) {
    auto* tok = static_cast<Token*>(p);
    EXPECT_EQ(tok->state.load(), 1);
    all.insert(tok);
    ++drained;
  }
  ASSERT_EQ(all.size(), tokens.size());
  for (Token& tok : tokens) EXPECT_EQ(all.count(&tok), 1u);
  // Every successful put was matched by a counted take or by the drain.
  EXPECT_EQ(cache.Puts() - cache.Takes(), drained);
  EXPECT_GT(cache.Takes(), 0u);
}

}  // namespace
}  // namespace internal
}  // namespace bsalloc
