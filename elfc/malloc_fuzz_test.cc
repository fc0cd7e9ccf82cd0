// elfc/malloc_fuzz_test.cc: the malloc operation fuzzer (malloc_fuzz.h) as a
// plain test: seeded random inputs and the committed corpus
// (elfc/testdata/malloc_fuzz_corpus/) against elfmalloc through the prefixed
// binding (malloc_fuzz_elfmalloc.h), so it runs in every config, ASan/UBSan
// and TSan included. The same entry function runs under libFuzzer
// (elfc/build_fuzzers.sh), whose findings go into the corpus.
//
// The oracle itself is tested too: four deliberately broken allocators
// (calloc that does not zero, malloc that hands out one block twice, realloc
// that loses the contents, a failing malloc that leaves errno alone) must
// each make RunMallocOps abort on a small hand-written input.
//
// More inputs: --test_env=MALLOC_FUZZ_RANDOM_INPUTS=N (default 300; fewer
// under TSan, whose instrumentation makes each input ~10x slower).
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "elfc/malloc_fuzz.h"
#include "elfc/malloc_fuzz_elfmalloc.h"
#include "gtest/gtest.h"

namespace elfc::fuzz {
namespace {

std::uint64_t RandomInputs() {
  const char* v = getenv("MALLOC_FUZZ_RANDOM_INPUTS");
  if (v != nullptr && v[0] != '\0') return strtoull(v, nullptr, 10);
#if defined(THREAD_SANITIZER)
  return 40;
#else
  return 300;
#endif
}

TEST(MallocFuzzTest, SeededRandomInputs) {
  const std::uint64_t n = RandomInputs();
  Stats total;
  std::vector<std::uint8_t> input;
  for (std::uint64_t seed = 1; seed <= n; ++seed) {
    // Input lengths from 16 bytes to 4 KiB.
    input.resize(16 + ((seed * 0x9e3779b97f4a7c15ULL) >> 52) % 4080);
    RandomInput(seed, input.data(), input.size());
    total.Add(RunMallocOps(ElfmallocApi(), input.data(), input.size()));
  }
  EXPECT_EQ(total.inputs, n);
  // Every kind of operation happened (the decoder is not degenerate).
  EXPECT_GT(total.allocations, 10 * n);
  EXPECT_GT(total.frees, 10 * n);
  EXPECT_GT(total.reallocs, n);
  EXPECT_GT(total.remote_ops, n / 2);
  EXPECT_GT(total.expected_failures, n);
  std::printf("%llu inputs: %llu operations, %llu allocations, %llu "
              "impossible requests refused, %llu bytes checked\n",
              static_cast<unsigned long long>(total.inputs),
              static_cast<unsigned long long>(total.operations),
              static_cast<unsigned long long>(total.allocations),
              static_cast<unsigned long long>(total.expected_failures),
              static_cast<unsigned long long>(total.bytes_checked));
}

std::string CorpusDir() {
  const char* srcdir = getenv("TEST_SRCDIR");
  const char* ws = getenv("TEST_WORKSPACE");
  if (srcdir == nullptr || ws == nullptr) return "elfc/testdata/malloc_fuzz_corpus";
  return std::string(srcdir) + "/" + ws + "/elfc/testdata/malloc_fuzz_corpus";
}

TEST(MallocFuzzTest, CommittedCorpus) {
  const std::string dir = CorpusDir();
  DIR* d = opendir(dir.c_str());
  ASSERT_NE(d, nullptr) << dir;
  std::vector<std::string> files;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') files.push_back(dir + "/" + e->d_name);
  }
  closedir(d);
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 8u) << "the corpus is missing";
  Stats total;
  for (const std::string& f : files) {
    FILE* fp = std::fopen(f.c_str(), "rb");
    ASSERT_NE(fp, nullptr) << f;
    std::vector<std::uint8_t> input;
    int c;
    while ((c = std::fgetc(fp)) != EOF) input.push_back(static_cast<std::uint8_t>(c));
    std::fclose(fp);
    SCOPED_TRACE(f);
    total.Add(RunMallocOps(ElfmallocApi(), input.data(), input.size()));
  }
  EXPECT_EQ(total.inputs, files.size());
  EXPECT_GT(total.allocations, files.size());
}

// ------------------------------------------------- the oracle catches bugs

// Broken allocators over glibc (or the sanitizer's) malloc.
void* DirtyCalloc(std::size_t n, std::size_t m) {
  void* p = malloc(n * m);
  if (p != nullptr) memset(p, 0xAB, n * m);
  return p;
}
alignas(64) unsigned char g_one_block[4096];
void* SameBlockMalloc(std::size_t) { return g_one_block; }
void NoFree(void*) {}
std::size_t FixedUsable(void*) { return 64; }
void* ForgetfulRealloc(void* p, std::size_t n) {
  void* q = malloc(n);
  if (q != nullptr) {
    memset(q, 0, n);
    free(p);
  }
  return q;
}
void* QuietFailMalloc(std::size_t n) {
  if (n > (std::size_t{1} << 40)) return nullptr;  // errno left alone
  return malloc(n);
}

MallocApi Broken() {
  MallocApi a = ElfmallocApi();
  a.name = "a broken allocator";
  return a;
}

// Programs (see the decoder in malloc_fuzz.cc): op byte, then its operands.
//   {2, 0, 0, 0x20, 100, 0, 0, 0}: calloc into slot 0 (previous block freed
//   with `how` 0), size 100 (0x20: small, U16 100 % 1025), m = 1, no swap.
const std::uint8_t kCalloc100[] = {2, 0, 0, 0x20, 100, 0, 0, 0};
//   two mallocs of 5 bytes, slots 0 and 1.
const std::uint8_t kTwoMallocs[] = {0, 0, 0, 0x05, 0, 1, 0, 0x05};
//   malloc(100) into slot 0, then realloc slot 0 to 200 (how = 1: realloc).
const std::uint8_t kMallocRealloc[] = {0, 0, 0, 0x20, 100, 0,
                                      10, 0, 0x20, 200, 0, 1};
//   op 15 (impossible), which 0 (malloc), size index 0 (SIZE_MAX).
const std::uint8_t kImpossibleMalloc[] = {15, 0, 0, 0, 0, 0};

template <std::size_t N>
void RunProgram(const MallocApi& api, const std::uint8_t (&in)[N]) {
  RunMallocOps(api, in, N);
}

TEST(MallocFuzzDeathTest, GoodAllocatorPassesTheHandWrittenPrograms) {
  RunProgram(ElfmallocApi(), kCalloc100);
  RunProgram(ElfmallocApi(), kTwoMallocs);
  RunProgram(ElfmallocApi(), kMallocRealloc);
  RunProgram(ElfmallocApi(), kImpossibleMalloc);
}

TEST(MallocFuzzDeathTest, CatchesCallocThatDoesNotZero) {
  MallocApi a = Broken();
  a.calloc = &DirtyCalloc;
  a.free = &free;
  a.malloc_usable_size = &malloc_usable_size;
  a.free_sized = nullptr;
  EXPECT_DEATH(RunProgram(a, kCalloc100), "calloc: byte 0 of 100 .* not zero");
}

TEST(MallocFuzzDeathTest, CatchesABlockHandedOutTwice) {
  MallocApi a = Broken();
  a.malloc = &SameBlockMalloc;
  a.free = &NoFree;
  a.free_sized = nullptr;
  a.malloc_usable_size = &FixedUsable;
  EXPECT_DEATH(RunProgram(a, kTwoMallocs), "overlapping the live");
}

TEST(MallocFuzzDeathTest, CatchesReallocThatLosesContents) {
  MallocApi a = Broken();
  a.malloc = &malloc;
  a.free = &free;
  a.free_sized = nullptr;
  a.realloc = &ForgetfulRealloc;
  a.malloc_usable_size = &malloc_usable_size;
  EXPECT_DEATH(RunProgram(a, kMallocRealloc), "contents kept by realloc");
}

TEST(MallocFuzzDeathTest, CatchesAFailureWithoutEnomem) {
  MallocApi a = Broken();
  a.malloc = &QuietFailMalloc;
  EXPECT_DEATH(RunProgram(a, kImpossibleMalloc), "want NULL, ENOMEM");
}

}  // namespace
}  // namespace elfc::fuzz
