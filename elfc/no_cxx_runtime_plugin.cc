// C++ code loaded late into a C program: no_cxx_runtime_test dlopen()s this
// shared object (RTLD_LOCAL, the way Python loads extension modules) after
// checking that libelfc.so brought no C++ runtime of its own. Its
// libstdc++ therefore arrives after libelfc.so's weak references were bound
// (to nothing), and operator new must find it by name: an absurd `new`
// throws std::bad_alloc that this code catches, and the handler it installs
// with std::set_new_handler is called. The nothrow forms return nullptr
// without calling such a late handler (malloc_bind/cxx_runtime.h says why).
#include <cstddef>
#include <cstdint>
#include <new>

namespace {

int g_calls = 0;

void UninstallOnSecondCall() {
  if (++g_calls == 2) std::set_new_handler(nullptr);
}

// Returns true if `new` of `n` bytes threw std::bad_alloc.
bool ThrowsBadAlloc(std::size_t n) {
  try {
    void* volatile p = ::operator new(n);
    ::operator delete(p);
  } catch (const std::bad_alloc&) {
    return true;
  } catch (...) {
  }
  return false;
}

}  // namespace

// 0 if every check passed, else one bit per failed check.
extern "C" __attribute__((visibility("default"))) int
NoCxxRuntimePluginCheck() {
  volatile std::size_t absurd = SIZE_MAX / 2;
  int failed = 0;
  std::set_new_handler(nullptr);
  if (!ThrowsBadAlloc(absurd)) failed |= 1;

  g_calls = 0;
  std::set_new_handler(&UninstallOnSecondCall);
  if (!ThrowsBadAlloc(absurd) || g_calls != 2) failed |= 2;

  std::set_new_handler(&UninstallOnSecondCall);
  g_calls = 0;
  if (::operator new(absurd, std::nothrow) != nullptr) failed |= 4;
  std::set_new_handler(nullptr);

  void* volatile p = ::operator new(100);
  if (p == nullptr) failed |= 8;
  ::operator delete(p);
  return failed;
}
