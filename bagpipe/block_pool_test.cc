// Tests for block_pool.h: blocks are carved from a chunk on demand (a
// fresh chunk is not made resident by its first block), every block of a
// chunk is handed out once, cache-line aligned and inside its chunk, and
// concurrent takers never get the same block.

#include "bagpipe/block_pool.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace bagpipe {
namespace internal {
namespace {

// Resident pages of [p, p + bytes) (p page aligned).
std::size_t ResidentPages(const void* p, std::size_t bytes) {
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> v((bytes + page - 1) / page);
  if (mincore(const_cast<void*>(p), bytes, v.data()) != 0) return ~0u;
  std::size_t n = 0;
  for (unsigned char c : v) n += c & 1;
  return n;
}

// A payload size no other test or structure uses: this pool is fresh.
using FreshPool = BlockPool<3000>;

TEST(BlockPoolTest, FirstBlockLeavesTheRestOfItsChunkUntouched) {
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  void* p = FreshPool::Get();
  ASSERT_NE(p, nullptr);
  // The first block of a fresh chunk starts it (header, then payload).
  char* chunk = static_cast<char*>(p) - sizeof(BlockHeader);
  ASSERT_EQ(reinterpret_cast<std::uintptr_t>(chunk) % page, 0u);
  // The first block's pages at most (linking every block up front made
  // all of the chunk's pages resident).
  const std::size_t first_pages =
      (FreshPool::kStride + page - 1) / page;
  EXPECT_LE(ResidentPages(chunk, FreshPool::kChunkBytes), first_pages);
  EXPECT_GT(FreshPool::kChunkBytes / page, 4 * first_pages);

  // The rest of the chunk, in order, then a new chunk.
  std::set<char*> seen{static_cast<char*>(p)};
  for (std::size_t i = 1; i < FreshPool::kBlocksPerChunk; ++i) {
    char* q = static_cast<char*>(FreshPool::Get());
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(q) % kCacheLine, 0u);
    EXPECT_EQ(q, chunk + i * FreshPool::kStride + sizeof(BlockHeader));
    EXPECT_TRUE(seen.insert(q).second);
  }
  char* next = static_cast<char*>(FreshPool::Get());
  ASSERT_NE(next, nullptr);
  EXPECT_TRUE(next < chunk || next >= chunk + FreshPool::kChunkBytes);
  EXPECT_TRUE(seen.insert(next).second);
}

// Threads take blocks at once (several chunks' worth, so chunk installs
// race with carving): no block is handed out twice, and every block is
// writable over its whole payload.
TEST(BlockPoolTest, ConcurrentTakersGetDistinctBlocks) {
  using Pool = BlockPool<200>;
  constexpr int kThreads = 4;
  const std::size_t per_thread = 3 * Pool::kBlocksPerChunk;
  std::vector<std::vector<void*>> got(kThreads);
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (std::size_t i = 0; i < per_thread; ++i) {
        void* p = Pool::Get();
        ASSERT_NE(p, nullptr);
        std::memset(p, t + 1, 200);
        got[t].push_back(p);
      }
    });
  }
  for (auto& t : ts) t.join();
  std::set<void*> all;
  for (int t = 0; t < kThreads; ++t) {
    for (void* p : got[t]) {
      EXPECT_TRUE(all.insert(p).second);
      EXPECT_EQ(static_cast<unsigned char*>(p)[199], t + 1);
    }
  }
  EXPECT_EQ(all.size(), kThreads * per_thread);
}

}  // namespace
}  // namespace internal
}  // namespace bagpipe
