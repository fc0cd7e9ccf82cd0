// elfc/malloc_fuzz_elfmalloc.cc: see malloc_fuzz_elfmalloc.h.
#include "elfc/malloc_fuzz_elfmalloc.h"

#include <cstddef>
#include <new>

#include "elfmalloc/general_allocator.h"
#include "malloc_bind/malloc_bind.h"

namespace elfc::fuzz {
namespace {

// The backend libelfc.so binds.
using ElfcFuzzBackend = elfmalloc::MallocBackend;

using Api = malloc_bind::Api<ElfcFuzzBackend>;

void* NewAligned(std::size_t n, std::size_t a) {
  return Api::OperatorNewAligned(n, static_cast<std::align_val_t>(a));
}
void* NewAlignedNothrow(std::size_t n, std::size_t a) {
  return Api::OperatorNewAlignedNothrow(n, static_cast<std::align_val_t>(a));
}
void DeleteAlignedSized(void* p, std::size_t n, std::size_t a) {
  Api::OperatorDeleteAlignedSized(p, n, static_cast<std::align_val_t>(a));
}

}  // namespace
}  // namespace elfc::fuzz

MALLOC_BIND_DEFINE_C_API(elfc_fuzz_, ::elfc::fuzz::ElfcFuzzBackend)

namespace elfc::fuzz {

const MallocApi& ElfmallocApi() {
  static const MallocApi api = [] {
    MallocApi a;
    a.name = "elfmalloc via malloc_bind (elfc_fuzz_*)";
    a.malloc = &elfc_fuzz_malloc;
    a.free = &elfc_fuzz_free;
    a.calloc = &elfc_fuzz_calloc;
    a.realloc = &elfc_fuzz_realloc;
    a.reallocarray = &elfc_fuzz_reallocarray;
    a.posix_memalign = &elfc_fuzz_posix_memalign;
    a.aligned_alloc = &elfc_fuzz_aligned_alloc;
    a.memalign = &elfc_fuzz_memalign;
    a.valloc = &elfc_fuzz_valloc;
    a.pvalloc = &elfc_fuzz_pvalloc;
    a.malloc_usable_size = &elfc_fuzz_malloc_usable_size;
    a.free_sized = &elfc_fuzz_free_sized;
    a.free_aligned_sized = &elfc_fuzz_free_aligned_sized;
    a.malloc_trim = &elfc_fuzz_malloc_trim;
    a.op_new = &Api::OperatorNew;
    a.op_new_nothrow = &Api::OperatorNewNothrow;
    a.op_new_aligned = &NewAligned;
    a.op_new_aligned_nothrow = &NewAlignedNothrow;
    a.op_delete = &Api::OperatorDelete;
    a.op_delete_sized = &Api::OperatorDeleteSized;
    a.op_delete_aligned_sized = &DeleteAlignedSized;
    return a;
  }();
  return api;
}

}  // namespace elfc::fuzz
