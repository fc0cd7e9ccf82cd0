// A reusable GoogleTest suite for the C allocation API: give it a table of
// function pointers (a CApi) and it checks every function's results, errno
// and edge cases against the semantics malloc_bind promises (glibc 2.36's,
// see README.md).
//
//   // Prefixed functions defined with MALLOC_BIND_DEFINE_C_API(mb_x_, B):
//   MALLOC_BIND_DECLARE_C_API(mb_x_)
//   MALLOC_BIND_INSTANTIATE_C_API_CONFORMANCE(MyBackend,
//                                             MALLOC_BIND_C_API_OF(mb_x_));
//
//   // The process's own malloc (glibc, or a preloaded replacement):
//   MALLOC_BIND_INSTANTIATE_C_API_CONFORMANCE(Process,
//                                             malloc_bind::ProcessCApi());
//
// The same checks pass on glibc itself (malloc_bind's glibc_control_test),
// so a failure means the implementation, not the check, is wrong; the
// places where malloc_bind deliberately differs from glibc 2.36 are CApi
// flags (pvalloc_zero_is_page, aligned_alloc_rejects_non_power_of_two).
//
// What is checked, for every entry point: results usable to their full
// malloc_usable_size and distinct from each other; alignment (8 B .. 4 MiB for
// posix_memalign, aligned_alloc, memalign, free_aligned_sized; a page for
// valloc / pvalloc); errno untouched by every successful call and set to
// exactly ENOMEM / EINVAL by failing ones; sizes near SIZE_MAX and
// PTRDIFF_MAX failing without touching the caller's pointers; calloc
// overflow in both argument orders and zeroing (also of reused, dirtied
// memory); realloc / reallocarray keeping contents across grow and shrink
// and keeping the old block on failure; zero sizes; a small multi-threaded
// churn with cross-thread frees.
//
// Link the library (it is alwayslink) and instantiate once per API; tests
// for optional functions (cfree, free_sized, free_aligned_sized,
// malloc_trim) are skipped when their pointer is null.
#ifndef MALLOC_BIND_C_API_CONFORMANCE_H_
#define MALLOC_BIND_C_API_CONFORMANCE_H_

#include <cstddef>
#include <ostream>

#include "gtest/gtest.h"

namespace malloc_bind {

struct CApi {
  // Shown in failure messages.
  const char* name = "";

  void* (*malloc)(std::size_t) = nullptr;
  void (*free)(void*) = nullptr;
  void* (*calloc)(std::size_t, std::size_t) = nullptr;
  void* (*realloc)(void*, std::size_t) = nullptr;
  void* (*reallocarray)(void*, std::size_t, std::size_t) = nullptr;
  int (*posix_memalign)(void**, std::size_t, std::size_t) = nullptr;
  void* (*aligned_alloc)(std::size_t, std::size_t) = nullptr;
  void* (*memalign)(std::size_t, std::size_t) = nullptr;
  void* (*valloc)(std::size_t) = nullptr;
  void* (*pvalloc)(std::size_t) = nullptr;
  std::size_t (*malloc_usable_size)(void*) = nullptr;

  // Optional: null means "not provided" and skips their tests.
  void (*cfree)(void*) = nullptr;
  void (*free_sized)(void*, std::size_t) = nullptr;
  void (*free_aligned_sized)(void*, std::size_t, std::size_t) = nullptr;
  int (*malloc_trim)(std::size_t) = nullptr;

  // Deliberate deviations from glibc 2.36. True is malloc_bind's behaviour.
  //
  // pvalloc(0) returns a whole page. glibc 2.36 rounds with the mask
  // -(pagesize - 1) instead of -pagesize, so pvalloc(0) asks for 1 byte
  // (malloc_usable_size 24) and pvalloc(4096) for 4097; set false for it.
  bool pvalloc_zero_is_page = true;
  // aligned_alloc with an alignment that is not a power of two (0 included)
  // fails with EINVAL (C17 DR 460; glibc 2.38 and later). glibc up to 2.37
  // rounds it up like memalign; set false for it (either is then accepted).
  bool aligned_alloc_rejects_non_power_of_two = true;
};

// gtest prints parameters in failure messages; a CApi prints as its name.
void PrintTo(const CApi& api, std::ostream* os);

// The allocation functions this process is linked against: glibc's, or
// those of a malloc replacement (LD_PRELOAD, a Bazel `malloc =` library).
// The optional ones are looked up with dlsym(RTLD_DEFAULT) and are null
// when the process has none (glibc 2.36 has no cfree for new links, and no
// free_sized / free_aligned_sized). Deviation flags are malloc_bind's
// (strict); the glibc control clears them.
CApi ProcessCApi();

// The fixture. Instantiate with the macro below (or directly with
// INSTANTIATE_TEST_SUITE_P after `using malloc_bind::CApiConformanceTest;`).
class CApiConformanceTest : public ::testing::TestWithParam<CApi> {};

}  // namespace malloc_bind

// A CApi over the functions MALLOC_BIND_DEFINE_C_API(PREFIX, ...) defines
// (declare them first with MALLOC_BIND_DECLARE_C_API(PREFIX)).
#define MALLOC_BIND_C_API_OF(PREFIX)                    \
  (::malloc_bind::CApi{                                 \
      .name = #PREFIX,                                  \
      .malloc = &PREFIX##malloc,                        \
      .free = &PREFIX##free,                            \
      .calloc = &PREFIX##calloc,                        \
      .realloc = &PREFIX##realloc,                      \
      .reallocarray = &PREFIX##reallocarray,            \
      .posix_memalign = &PREFIX##posix_memalign,        \
      .aligned_alloc = &PREFIX##aligned_alloc,          \
      .memalign = &PREFIX##memalign,                    \
      .valloc = &PREFIX##valloc,                        \
      .pvalloc = &PREFIX##pvalloc,                      \
      .malloc_usable_size = &PREFIX##malloc_usable_size, \
      .cfree = &PREFIX##cfree,                          \
      .free_sized = &PREFIX##free_sized,                \
      .free_aligned_sized = &PREFIX##free_aligned_sized, \
      .malloc_trim = &PREFIX##malloc_trim,              \
  })

// Registers the whole suite for `api` (an expression yielding a CApi) under
// the instantiation name `Name`. Use at namespace scope.
#define MALLOC_BIND_INSTANTIATE_C_API_CONFORMANCE(Name, api) \
  using ::malloc_bind::CApiConformanceTest;                  \
  INSTANTIATE_TEST_SUITE_P(Name, CApiConformanceTest, ::testing::Values(api))

#endif  // MALLOC_BIND_C_API_CONFORMANCE_H_
