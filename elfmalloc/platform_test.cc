// Tests for platform.h: the clock moves forward at the wall clock's pace,
// the CPU count matches the affinity mask.
#include "elfmalloc/platform.h"

#include <sched.h>
#include <time.h>

#include <cstdint>
#include <cstring>

#include "gtest/gtest.h"

namespace elfmalloc {
namespace {

TEST(PlatformTest, CoarseClockAdvances) {
  const std::uint64_t a = CoarseMonotonicMs();
  struct timespec ts = {0, 50 * 1000 * 1000};
  nanosleep(&ts, nullptr);
  const std::uint64_t b = CoarseMonotonicMs();
  EXPECT_GE(b, a + 40);  // coarse: a tick's resolution either side
  EXPECT_LT(b, a + 5000);
}

TEST(PlatformTest, CpuCountIsTheAffinityMask) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  EXPECT_EQ(AvailableCpus(), static_cast<std::size_t>(CPU_COUNT(&set)));
  EXPECT_GE(AvailableCpus(), 1u);
}

TEST(PlatformTest, RandomBytesDifferBetweenCalls) {
  std::uint64_t a[4] = {};
  std::uint64_t b[4] = {};
  ASSERT_TRUE(RandomBytes(a, sizeof(a)));
  ASSERT_TRUE(RandomBytes(b, sizeof(b)));
  // 256 random bits: equal by chance with probability 2^-256.
  EXPECT_NE(std::memcmp(a, b, sizeof(a)), 0);
  EXPECT_TRUE(RandomBytes(a, 0));
}

}  // namespace
}  // namespace elfmalloc
