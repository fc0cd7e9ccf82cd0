// elfc/malloc_fuzzer.cc: drivers of the malloc operation fuzzer
// (malloc_fuzz.h) outside the seeded test.
//
// Built two ways from this one file:
//   * with -DALLOCATORS_LIBFUZZER by elfc/build_fuzzers.sh (clang,
//     -fsanitize=fuzzer,address,undefined, elfmalloc compiled in with
//     coverage): LLVMFuzzerTestOneInput runs each input against elfmalloc
//     through the prefixed binding (malloc_fuzz_elfmalloc.h);
//   * by Bazel as //elfc:malloc_fuzzer, a replay tool:
//       malloc_fuzzer [--process] [--random=N [--size=BYTES] [--seed=S]]
//                     [FILE|DIR]...
//     runs every FILE (and every file in each DIR: a libFuzzer corpus or
//     crash) and N seeded random inputs through the same entry function,
//     prints totals, exits 0 if nothing failed (a failure aborts with the
//     operation and input offset; set MALLOC_FUZZ_TRACE=1 to see every
//     operation). With --process the functions under test are the process's
//     own malloc, free, ..., operator new/delete, so
//       LD_PRELOAD=libelfc.so malloc_fuzzer --process ...
//     fuzzes the real libelfc.so (//elfc:malloc_fuzz_preload_test does
//     this); without it, the Bazel-built elfmalloc through the binding.
#include <dirent.h>
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <new>
#include <string>
#include <vector>

#include "elfc/malloc_fuzz.h"
#include "elfc/malloc_fuzz_elfmalloc.h"

#ifdef ALLOCATORS_LIBFUZZER

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  elfc::fuzz::RunMallocOps(elfc::fuzz::ElfmallocApi(), data, size);
  return 0;
}

#else  // !ALLOCATORS_LIBFUZZER

#include "elfc/preload_test_util.h"

namespace {

using elfc::fuzz::MallocApi;
using elfc::fuzz::Stats;

// The process's allocation functions (whatever the dynamic linker bound:
// glibc's, or a preloaded library's). The C23 sized frees are looked up,
// since glibc 2.36 has none.
void* ProcNew(std::size_t n) { return ::operator new(n); }
void* ProcNewNothrow(std::size_t n) { return ::operator new(n, std::nothrow); }
void* ProcNewAligned(std::size_t n, std::size_t a) {
  return ::operator new(n, static_cast<std::align_val_t>(a));
}
void* ProcNewAlignedNothrow(std::size_t n, std::size_t a) {
  return ::operator new(n, static_cast<std::align_val_t>(a), std::nothrow);
}
void ProcDelete(void* p) { ::operator delete(p); }
void ProcDeleteSized(void* p, std::size_t n) { ::operator delete(p, n); }
void ProcDeleteAlignedSized(void* p, std::size_t n, std::size_t a) {
  ::operator delete(p, n, static_cast<std::align_val_t>(a));
}

// The file name of the object malloc resolves to ("" if unknown).
const char* MallocObject() {
  Dl_info info;
  void* sym = dlsym(RTLD_DEFAULT, "malloc");
  if (sym == nullptr || dladdr(sym, &info) == 0 || info.dli_fname == nullptr) {
    return "";
  }
  const char* base = strrchr(info.dli_fname, '/');
  return base == nullptr ? info.dli_fname : base + 1;
}

MallocApi ProcessApi() {
  MallocApi a;
  a.name = "the process's malloc";
  a.malloc = &::malloc;
  a.free = &::free;
  a.calloc = &::calloc;
  a.realloc = &::realloc;
  a.reallocarray = &::reallocarray;
  a.posix_memalign = &::posix_memalign;
  a.aligned_alloc = &::aligned_alloc;
  a.memalign = &::memalign;
  a.valloc = &::valloc;
  a.pvalloc = &::pvalloc;
  a.malloc_usable_size = &::malloc_usable_size;
  a.free_sized = reinterpret_cast<void (*)(void*, std::size_t)>(
      dlsym(RTLD_DEFAULT, "free_sized"));
  a.free_aligned_sized =
      reinterpret_cast<void (*)(void*, std::size_t, std::size_t)>(
          dlsym(RTLD_DEFAULT, "free_aligned_sized"));
  a.malloc_trim = &::malloc_trim;
  a.op_new = &ProcNew;
  a.op_new_nothrow = &ProcNewNothrow;
  a.op_new_aligned = &ProcNewAligned;
  a.op_new_aligned_nothrow = &ProcNewAlignedNothrow;
  a.op_delete = &ProcDelete;
  a.op_delete_sized = &ProcDeleteSized;
  a.op_delete_aligned_sized = &ProcDeleteAlignedSized;
  // elfc (or anything else bound by malloc_bind, e.g. linked in) is held to
  // malloc_bind's promises. glibc 2.36 rounds pvalloc(0) to less than a
  // page (malloc_bind's documented deviation) and libstdc++'s aligned new
  // does not check its size rounding for overflow, so the program doubles
  // as the glibc control; other peers (jemalloc, ...) may also refuse
  // non-power-of-two alignments with EINVAL.
  const char* object = MallocObject();
  if (strncmp(object, "libc.so", 7) == 0) {
    a.pvalloc_zero_is_page = false;
    a.aligned_new_checks_overflow = false;
  } else if (strncmp(object, "libelfc", 7) != 0 &&
             dlsym(RTLD_DEFAULT, "elfc_version") == nullptr) {
    a.pvalloc_zero_is_page = false;
    a.aligned_new_checks_overflow = false;
    a.nonpow2_alignment_rounds_up = false;
  }
  return a;
}

bool ReadFile(const std::string& path, std::vector<std::uint8_t>* out) {
  FILE* f = fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  out->clear();
  std::uint8_t buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
    out->insert(out->end(), buf, buf + n);
  }
  fclose(f);
  return true;
}

// FILE, or every regular file in DIR (sorted, so runs are reproducible).
std::vector<std::string> Expand(const std::string& path) {
  struct stat st;
  ELFC_CHECK(stat(path.c_str(), &st) == 0, "cannot stat %s", path.c_str());
  if (!S_ISDIR(st.st_mode)) return {path};
  std::vector<std::string> files;
  DIR* d = opendir(path.c_str());
  ELFC_CHECK(d != nullptr, "cannot open %s", path.c_str());
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const std::string f = path + "/" + e->d_name;
    if (stat(f.c_str(), &st) == 0 && S_ISREG(st.st_mode)) files.push_back(f);
  }
  closedir(d);
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

int main(int argc, char** argv) {
  bool process = false;
  std::uint64_t random = 0;
  std::size_t size = 2048;
  std::uint64_t seed = 1;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (strcmp(a, "--process") == 0) {
      process = true;
    } else if (strncmp(a, "--random=", 9) == 0) {
      random = strtoull(a + 9, nullptr, 10);
    } else if (strncmp(a, "--size=", 7) == 0) {
      size = strtoull(a + 7, nullptr, 10);
    } else if (strncmp(a, "--seed=", 7) == 0) {
      seed = strtoull(a + 7, nullptr, 10);
    } else if (a[0] == '-') {
      fprintf(stderr,
              "usage: %s [--process] [--random=N [--size=BYTES] [--seed=S]] "
              "[FILE|DIR]...\n",
              argv[0]);
      return 2;
    } else {
      for (const std::string& f : Expand(a)) paths.push_back(f);
    }
  }
  if (process) elfc::test::CheckPreload("malloc_fuzzer");
  const MallocApi api = process ? ProcessApi() : elfc::fuzz::ElfmallocApi();
  Stats total;
  std::vector<std::uint8_t> input;
  for (const std::string& p : paths) {
    ELFC_CHECK(ReadFile(p, &input), "cannot read %s", p.c_str());
    total.Add(elfc::fuzz::RunMallocOps(api, input.data(), input.size()));
  }
  input.resize(size);
  for (std::uint64_t i = 0; i < random; ++i) {
    elfc::fuzz::RandomInput(seed + i, input.data(), input.size());
    total.Add(elfc::fuzz::RunMallocOps(api, input.data(), input.size()));
  }
  printf("malloc_fuzzer: PASS %llu inputs (%zu files, %llu random) against "
         "%s: %llu operations, %llu allocations, %llu frees, %llu reallocs, "
         "%llu cross-thread, %llu impossible requests refused, %llu bytes "
         "checked\n",
         static_cast<unsigned long long>(total.inputs), paths.size(),
         static_cast<unsigned long long>(random), api.name,
         static_cast<unsigned long long>(total.operations),
         static_cast<unsigned long long>(total.allocations),
         static_cast<unsigned long long>(total.frees),
         static_cast<unsigned long long>(total.reallocs),
         static_cast<unsigned long long>(total.remote_ops),
         static_cast<unsigned long long>(total.expected_failures),
         static_cast<unsigned long long>(total.bytes_checked));
  return 0;
}

#endif  // ALLOCATORS_LIBFUZZER
