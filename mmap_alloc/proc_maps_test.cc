// Tests for the /proc/self/maps parser and probes the other mmap_alloc tests
// rely on (the reference had the same: test_perms_fn), so that a parser bug
// cannot make those tests pass vacuously.
#include "mmap_alloc/proc_maps.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "gtest/gtest.h"

namespace mmap_alloc {
namespace test_util {
namespace {

TEST(ProcMapsTest, ParsesLinesWithAndWithoutNames) {
  const auto maps = ParseMaps(
      "00400000-0040b000 r-xp 00000000 08:02 173521      /usr/bin/dbus-daemon\n"
      "7f0000001000-7f0000003000 rw-p 00000000 00:00 0 \n"
      "7f0000003000-7f0000004000 ---p 00000000 00:00 0          [anon:my name]\n"
      "garbage line\n"
      "7ffd5a6b0000-7ffd5a6d1000 rw-p 00000000 00:00 0                          "
      "[stack]");
  ASSERT_EQ(maps.size(), 4u);
  EXPECT_EQ(maps[0].start, 0x400000u);
  EXPECT_EQ(maps[0].end, 0x40b000u);
  EXPECT_EQ(maps[0].perms, "r-xp");
  EXPECT_EQ(maps[0].name, "/usr/bin/dbus-daemon");
  EXPECT_EQ(maps[1].start, 0x7f0000001000u);
  EXPECT_EQ(maps[1].perms, "rw-p");
  EXPECT_EQ(maps[1].name, "");
  EXPECT_EQ(maps[2].perms, "---p");
  EXPECT_EQ(maps[2].name, "[anon:my name]");
  EXPECT_EQ(maps[3].name, "[stack]");
}

TEST(ProcMapsTest, MappedBytesInClipsToWindow) {
  const std::string text =
      "1000-3000 rw-p 00000000 00:00 0\n"
      "5000-6000 r--p 00000000 00:00 0\n";
  EXPECT_EQ(MappedBytesIn(text, 0, 0x10000), 0x3000u);
  EXPECT_EQ(MappedBytesIn(text, 0x2000, 0x5800), 0x1800u);
  EXPECT_EQ(MappedBytesIn(text, 0x3000, 0x5000), 0u);
}

TEST(ProcMapsTest, ProbesSeeRealMappings) {
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  void* p = mmap(nullptr, 3 * page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                 0);
  ASSERT_NE(p, MAP_FAILED);
  char* c = static_cast<char*>(p);
  ASSERT_EQ(mprotect(c + page, page, PROT_READ | PROT_WRITE | PROT_EXEC), 0);
  EXPECT_EQ(PermsAt(c), "r--p");
  EXPECT_EQ(PermsAt(c + page), "rwxp");
  auto m = FindMapping(c + page);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->start, reinterpret_cast<std::uintptr_t>(c + page));
  EXPECT_EQ(m->end, reinterpret_cast<std::uintptr_t>(c + 2 * page));
  EXPECT_NE(VmFlagsAt(c).find("rd"), std::string::npos);
  EXPECT_TRUE(IsMapped(c, 3 * page));
  EXPECT_EQ(ResidentPages(c, 3 * page), 0u);
  c[page] = 1;
  EXPECT_EQ(ResidentPages(c, 3 * page), 1u);
  ASSERT_EQ(munmap(c + 2 * page, page), 0);
  EXPECT_FALSE(IsMapped(c, 3 * page));
  EXPECT_EQ(ResidentPages(c, 3 * page), SIZE_MAX);
  EXPECT_EQ(PermsAt(c + 2 * page), "");
  ASSERT_EQ(munmap(c, 2 * page), 0);
}

TEST(ProcMapsTest, ReadProcFileReportsTooSmallBuffer) {
  char small[16];
  EXPECT_EQ(ReadProcFile("/proc/self/maps", small, sizeof(small)), 0u);
  EXPECT_EQ(ReadProcFile("/nonexistent", small, sizeof(small)), 0u);
  char big[1 << 16];
  EXPECT_GT(ReadProcFile("/proc/self/statm", big, sizeof(big)), 0u);
}

}  // namespace
}  // namespace test_util
}  // namespace mmap_alloc
