// operator new's C++ guarantees through elfc, in a C++ program whose
// std::set_new_handler and catch clauses belong to its own libstdc++:
// libelfc.so reaches that runtime only through weak references
// (malloc_bind/cxx_runtime.h), so these checks prove the references bind to
// the program's runtime. Run two ways:
//
//   //elfc:cxx_new_test         libelfc.so preloaded (preload_test.sh)
//   //elfc:cxx_new_linked_test  elfc linked into the program through
//                               Bazel's `malloc = "//elfc:elfc_malloc"`
//                               (--linked; also what --config=elfc does)
//
// Checks: an absurd `new` throws std::bad_alloc (caught as itself and as
// std::exception, for the plain, array and aligned forms); the nothrow forms
// return nullptr; a handler installed with std::set_new_handler is called on
// every failed attempt until it uninstalls itself; and, on a real failure
// (the address space capped with RLIMIT_AS), a handler that frees a reserve
// lets the retried allocation succeed.
#include <sys/resource.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <new>

#include "elfc/preload_test_util.h"

// Defined by elfc (elfc.h) when it is linked into the program.
extern "C" const char* elfc_version(void) __attribute__((weak));

namespace {

constexpr std::size_t kAbsurd = SIZE_MAX / 2;

int g_calls = 0;
int g_uninstall_after = 0;
void* g_reserve = nullptr;

void CountingHandler() {
  if (++g_calls >= g_uninstall_after) std::set_new_handler(nullptr);
}

void ReserveHandler() {
  ++g_calls;
  ::operator delete(g_reserve);
  g_reserve = nullptr;
  std::set_new_handler(nullptr);
}

// Returns the message of the std::bad_alloc `make` throws, or nullptr if it
// throws nothing (the block is leaked: the test fails anyway) or something
// else.
template <class F>
const char* BadAllocMessage(F make) {
  try {
    elfc::test::Log("cxx_new_test: an absurd new returned %p", make());
  } catch (const std::bad_alloc& e) {
    return e.what();
  } catch (...) {
  }
  return nullptr;
}

void CheckBadAlloc() {
  std::set_new_handler(nullptr);
  const char* what = BadAllocMessage([] { return ::operator new(kAbsurd); });
  ELFC_CHECK(what != nullptr, "operator new(absurd) did not throw bad_alloc");
  ELFC_CHECK(what != nullptr && std::strstr(what, "bad_alloc") != nullptr,
        "what() = %s", what);
  ELFC_CHECK(BadAllocMessage([] { return ::operator new[](kAbsurd); }) != nullptr,
        "operator new[](absurd) did not throw bad_alloc");
  ELFC_CHECK(BadAllocMessage([] {
          return ::operator new(kAbsurd, std::align_val_t{4096});
        }) != nullptr,
        "aligned operator new(absurd) did not throw bad_alloc");

  // A base-class handler matches too: the typeinfo is std::bad_alloc's.
  bool caught_as_exception = false;
  try {
    volatile std::size_t n = kAbsurd;  // not a constant: no compile error
    // Stored through a volatile pointer: a new/delete pair the compiler
    // could see through would be elided, and nothing would throw.
    char* volatile p = new char[n];
    delete[] p;
  } catch (const std::exception&) {
    caught_as_exception = true;
  }
  ELFC_CHECK(caught_as_exception, "new char[absurd]: no std::exception caught");

  ELFC_CHECK(::operator new(kAbsurd, std::nothrow) == nullptr, "nothrow new");
  ELFC_CHECK(::operator new[](kAbsurd, std::nothrow) == nullptr, "nothrow new[]");
  ELFC_CHECK(::operator new(kAbsurd, std::align_val_t{64}, std::nothrow) ==
            nullptr,
        "aligned nothrow new");
  elfc::test::Log("cxx_new_test: bad_alloc and nothrow ok");
}

void CheckHandlerLoop() {
  for (int nothrow = 0; nothrow < 2; ++nothrow) {
    g_calls = 0;
    g_uninstall_after = 3;
    std::set_new_handler(&CountingHandler);
    if (nothrow) {
      ELFC_CHECK(::operator new(kAbsurd, std::nothrow) == nullptr, "nothrow new");
    } else {
      ELFC_CHECK(BadAllocMessage([] { return ::operator new(kAbsurd); }) !=
                nullptr,
            "no bad_alloc after the handler uninstalled itself");
    }
    ELFC_CHECK(g_calls == 3, "handler called %d times, want 3 (nothrow=%d)",
          g_calls, nothrow);
    ELFC_CHECK(std::get_new_handler() == nullptr, "handler still installed");
  }
  elfc::test::Log("cxx_new_test: set_new_handler's handler is called");
}

std::size_t AddressSpaceBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  ELFC_CHECK(f != nullptr, "/proc/self/statm");
  unsigned long pages = 0;
  ELFC_CHECK(std::fscanf(f, "%lu", &pages) == 1, "/proc/self/statm");
  std::fclose(f);
  return pages * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

// A real out-of-memory failure that freeing the reserve cures: the address
// space is capped 32 MiB above what the process uses, with a 64 MiB reserve
// allocated; a 64 MiB request fails until the handler frees the reserve.
void CheckReserveHandler() {
  constexpr std::size_t kBlock = std::size_t{64} << 20;
  rlimit saved;
  ELFC_CHECK(getrlimit(RLIMIT_AS, &saved) == 0, "getrlimit");
  enum Form { kPlain, kNothrow, kAligned };
  for (Form form : {kPlain, kNothrow, kAligned}) {
    g_reserve = ::operator new(kBlock);
    std::memset(g_reserve, 1, 4096);
    rlimit capped = saved;
    capped.rlim_cur = AddressSpaceBytes() + (std::size_t{32} << 20);
    ELFC_CHECK(setrlimit(RLIMIT_AS, &capped) == 0, "setrlimit");
    g_calls = 0;
    std::set_new_handler(&ReserveHandler);
    void* p = nullptr;
    switch (form) {
      case kPlain:
        p = ::operator new(kBlock);
        break;
      case kNothrow:
        p = ::operator new(kBlock, std::nothrow);
        break;
      case kAligned:
        p = ::operator new(kBlock, std::align_val_t{4096});
        break;
    }
    ELFC_CHECK(setrlimit(RLIMIT_AS, &saved) == 0, "setrlimit (restore)");
    ELFC_CHECK(p != nullptr, "form %d: no block after the handler freed the "
          "reserve", form);
    ELFC_CHECK(g_calls == 1,
          "form %d: handler called %d times, want 1 (did the capped request "
          "fail at all?)",
          form, g_calls);
    ELFC_CHECK(g_reserve == nullptr, "form %d: reserve not freed", form);
    std::memset(p, 2, kBlock);
    if (form == kAligned) {
      ELFC_CHECK(reinterpret_cast<std::uintptr_t>(p) % 4096 == 0, "alignment");
      ::operator delete(p, std::align_val_t{4096});
    } else {
      ::operator delete(p);
    }
    std::set_new_handler(nullptr);
  }
  elfc::test::Log("cxx_new_test: a handler freeing a reserve cures a real "
                  "failure");
}

}  // namespace

int main(int argc, char** argv) {
  const bool linked = argc > 1 && std::strcmp(argv[1], "--linked") == 0;
  if (linked) {
    ELFC_CHECK(elfc_version != nullptr, "--linked, but elfc is not linked in");
    elfc::test::Log("cxx_new_test: elfc %s linked in", elfc_version());
  } else {
    elfc::test::CheckPreload("cxx_new_test");
  }
  CheckBadAlloc();
  CheckHandlerLoop();
  CheckReserveHandler();
  std::printf("cxx_new_test: PASS\n");
  return 0;
}
