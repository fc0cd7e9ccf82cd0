// malloc_bind's only contact with the C++ runtime: the new-handler and
// std::bad_alloc for the operator new forms, reached through weak references
// to whatever runtime the process has (libstdc++, or libc++ / libc++abi),
// and a message plus abort() when it has none.
//
// Why not simply `throw std::bad_alloc()` and std::get_new_handler(): those
// are strong references into the C++ runtime, so a malloc replacement built
// as a shared object would need libstdc++ at load time, and with it libm and
// libgcc_s, in every C program it is preloaded into (about 2 MiB of resident
// memory for /bin/true, three times what the C library alone maps).
// Resolving the same symbols weakly costs nothing and is also the only
// correct way to see the program's handler: std::set_new_handler stores it in
// the runtime the program links, and a private copy of that runtime would
// have its own, never-set handler variable.
//
// When no C++ runtime is loaded nothing can have installed a handler and
// nothing can catch an exception: the throwing operator new forms then print
// a message and abort (what libstdc++'s operator new does when built without
// exceptions), the nothrow forms return nullptr. Weak references are bound
// once, at load time; a C++ runtime that a C program dlopen()s later (a
// Python extension module written in C++) is found on the failure path by
// name instead (libstdc++.so.6, libc++.so.1, with RTLD_NOLOAD), so its
// handler is called and its std::bad_alloc thrown. The one thing that needs
// the load-time runtime is catching a handler's exception in the nothrow
// forms (the compiler's landing pad calls __cxa_begin_catch through the
// weak reference): with a late runtime they return nullptr without calling
// the handler.
//
// Exceptions are raised through the Itanium C++ ABI
// (https://itanium-cxx-abi.github.io/cxx-abi/abi-eh.html), which both
// libstdc++ (libsupc++) and libc++abi implement, with std::bad_alloc's own
// typeinfo, vtable and destructor: a program's `catch (const std::bad_alloc&)`
// or `catch (const std::exception&)` matches as for a `throw` in its code.
#ifndef MALLOC_BIND_CXX_RUNTIME_H_
#define MALLOC_BIND_CXX_RUNTIME_H_

#include <new>

namespace malloc_bind {
namespace internal {

// The installed new-handler (std::get_new_handler() of the process's C++
// runtime), or nullptr when there is none or no runtime is loaded.
std::new_handler GetNewHandler() noexcept;

// Throws std::bad_alloc through the process's C++ runtime; without one,
// writes a one-line message to stderr and aborts.
[[noreturn]] void ThrowBadAlloc();

// Calls `handler` (non-null) for a nothrow operator new: true if it returned,
// false if it threw (any exception, caught and discarded, as libstdc++'s
// nothrow forms do).
bool CallNewHandlerNothrow(std::new_handler handler) noexcept;

// True if ThrowBadAlloc would throw (the runtime's exception entry points
// and std::bad_alloc's typeinfo and vtable are all present); for tests.
bool CanThrowBadAlloc() noexcept;

}  // namespace internal
}  // namespace malloc_bind

#endif  // MALLOC_BIND_CXX_RUNTIME_H_
