// elfc/malloc_fuzz_elfmalloc.h: the malloc fuzzer's MallocApi over elfc's
// allocator, bound with prefixed names so that it coexists with the
// process's own malloc.
//
// malloc_fuzz_elfmalloc.cc expands MALLOC_BIND_DEFINE_C_API(elfc_fuzz_, ...)
// over elfmalloc's general allocator with the same backend as elfc.cc
// (Allocate, AllocateAligned, Deallocate, UsableSize, Reallocate,
// ReleaseFreeMemory; kDefaultAlignment 8), so elfc_fuzz_malloc & co. run
// exactly the code libelfc.so's malloc & co. run, while the test binary's
// own malloc stays glibc's or a sanitizer's. That is what lets the fuzz
// test run under ASan/UBSan and TSan, and the libFuzzer build instrument
// elfmalloc for coverage. The C++ operator forms are malloc_bind's
// Api<Backend> functions (the bodies of elfc's operator new/delete).
#ifndef ELFC_MALLOC_FUZZ_ELFMALLOC_H_
#define ELFC_MALLOC_FUZZ_ELFMALLOC_H_

#include "elfc/malloc_fuzz.h"

namespace elfc::fuzz {

// The whole API (C functions and C++ operator forms) over elfmalloc.
const MallocApi& ElfmallocApi();

}  // namespace elfc::fuzz

#endif  // ELFC_MALLOC_FUZZ_ELFMALLOC_H_
