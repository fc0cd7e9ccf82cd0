// The real, unprefixed allocation API over elfmalloc, exactly as //elfc binds
// it: every C function and operator form. Linked into override_test as its
// `malloc`, so gtest, libstdc++ and glibc's own internal allocations (strdup,
// stdio buffers) all run on it.
//
// Compiled with -fvisibility=hidden (see BUILD), like libelfc.so: the
// definitions must still be exported (MALLOC_BIND_EXPORT), or glibc's
// internal calls would keep going to glibc's malloc and override_test would
// catch blocks from two allocators mixing.
//
// The glibc headers come first on purpose: the macros' definitions must be
// valid redeclarations of glibc's (noexcept = __THROW).
#include <malloc.h>
#include <stdlib.h>

#include <cstdlib>
#include <new>

#include "malloc_bind/malloc_bind.h"
#include "malloc_bind/test_backends.h"

MALLOC_BIND_DEFINE_C_API(, malloc_bind::backends::ElfBackend)
MALLOC_BIND_DEFINE_CXX_OPERATORS(malloc_bind::backends::ElfBackend)
