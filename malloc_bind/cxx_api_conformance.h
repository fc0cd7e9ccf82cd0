// A reusable GoogleTest suite for the C++ allocation operators: every form of
// operator new / delete, scalar and array, given as function pointers (a
// CxxApi). It checks what the standard and libstdc++ do:
//
//  * new returns distinct writable blocks (new(0) too), aligned to
//    __STDCPP_DEFAULT_NEW_ALIGNMENT__ (or less for smaller blocks); the
//    aligned forms to any power of two up to 4 MiB;
//  * on failure the throwing forms call std::get_new_handler() until it is
//    null, retrying after each call, then throw std::bad_alloc; a handler's
//    own exception propagates; the nothrow forms run the same loop but
//    return nullptr (also when the handler throws);
//  * a non-power-of-two std::align_val_t fails (bad_alloc / nullptr) without
//    calling the handler, as in libstdc++;
//  * every delete form accepts nullptr and the blocks of its new form.
//
// Deterministic failures come from sizes above PTRDIFF_MAX (always fail), and,
// when the CxxApi offers fault injection (`fail_next_allocations`), from
// making the next N attempts fail: then the handler-frees-a-reserve and
// handler-called-N-times-then-success cases run too.
//
//   MALLOC_BIND_INSTANTIATE_CXX_API_CONFORMANCE(
//       Mine, malloc_bind::CxxApiOf<MyBackend>("mine", &MyBackend::FailNext));
//   MALLOC_BIND_INSTANTIATE_CXX_API_CONFORMANCE(
//       Process, malloc_bind::ProcessCxxApi());  // the global operators
#ifndef MALLOC_BIND_CXX_API_CONFORMANCE_H_
#define MALLOC_BIND_CXX_API_CONFORMANCE_H_

#include <cstddef>
#include <new>
#include <ostream>

#include "gtest/gtest.h"
#include "malloc_bind/malloc_bind.h"

namespace malloc_bind {

// One set of operators: the scalar or the array forms.
struct CxxOps {
  void* (*new_)(std::size_t) = nullptr;
  void* (*new_nothrow)(std::size_t) = nullptr;
  void* (*new_aligned)(std::size_t, std::align_val_t) = nullptr;
  void* (*new_aligned_nothrow)(std::size_t, std::align_val_t) = nullptr;
  void (*delete_)(void*) = nullptr;
  void (*delete_nothrow)(void*) = nullptr;
  void (*delete_sized)(void*, std::size_t) = nullptr;
  void (*delete_aligned)(void*, std::align_val_t) = nullptr;
  void (*delete_aligned_nothrow)(void*, std::align_val_t) = nullptr;
  void (*delete_aligned_sized)(void*, std::size_t, std::align_val_t) = nullptr;
};

struct CxxApi {
  const char* name = "";
  CxxOps scalar;
  CxxOps array;
  // Optional: the usable size of a block (checked >= the request).
  std::size_t (*usable_size)(void*) = nullptr;
  // Optional: make the next n allocation attempts fail (0 clears). Without
  // it the fault-injection tests are skipped.
  void (*fail_next_allocations)(int n) = nullptr;

  // Deliberate deviation from libstdc++ 12 (true is malloc_bind's
  // behaviour): its aligned operator new rounds the size up to a multiple of
  // the alignment without an overflow check, so new(SIZE_MAX,
  // align_val_t(64)) wraps to a tiny request and *succeeds*. Set false for
  // it; sizes that cannot wrap are still checked.
  bool aligned_new_checks_overflow = true;
};

void PrintTo(const CxxApi& api, std::ostream* os);

// The process's global operators (libstdc++'s, or a replacement's).
CxxApi ProcessCxxApi();

// Api<B>'s operator functions, for both the scalar and the array forms.
template <Backend B>
CxxApi CxxApiOf(const char* name, void (*fail_next_allocations)(int) = nullptr) {
  using A = Api<B>;
  CxxOps ops;
  ops.new_ = [](std::size_t n) { return A::OperatorNew(n); };
  ops.new_nothrow = [](std::size_t n) { return A::OperatorNewNothrow(n); };
  ops.new_aligned = [](std::size_t n, std::align_val_t al) {
    return A::OperatorNewAligned(n, al);
  };
  ops.new_aligned_nothrow = [](std::size_t n, std::align_val_t al) {
    return A::OperatorNewAlignedNothrow(n, al);
  };
  ops.delete_ = [](void* p) { A::OperatorDelete(p); };
  ops.delete_nothrow = [](void* p) { A::OperatorDelete(p); };
  ops.delete_sized = [](void* p, std::size_t n) {
    A::OperatorDeleteSized(p, n);
  };
  ops.delete_aligned = [](void* p, std::align_val_t al) {
    A::OperatorDeleteAligned(p, al);
  };
  ops.delete_aligned_nothrow = [](void* p, std::align_val_t al) {
    A::OperatorDeleteAligned(p, al);
  };
  ops.delete_aligned_sized = [](void* p, std::size_t n, std::align_val_t al) {
    A::OperatorDeleteAlignedSized(p, n, al);
  };
  CxxApi api;
  api.name = name;
  api.scalar = ops;
  api.array = ops;
  api.usable_size = [](void* p) { return A::MallocUsableSize(p); };
  api.fail_next_allocations = fail_next_allocations;
  return api;
}

class CxxApiConformanceTest : public ::testing::TestWithParam<CxxApi> {};

}  // namespace malloc_bind

#define MALLOC_BIND_INSTANTIATE_CXX_API_CONFORMANCE(Name, api) \
  using ::malloc_bind::CxxApiConformanceTest;                  \
  INSTANTIATE_TEST_SUITE_P(Name, CxxApiConformanceTest, ::testing::Values(api))

#endif  // MALLOC_BIND_CXX_API_CONFORMANCE_H_
