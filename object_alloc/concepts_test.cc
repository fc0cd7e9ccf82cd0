// Tests for object_alloc.h: Layout's invariants, LayoutOf, the two concepts
// (which types satisfy them and which do not, and why), and IsThreadSafe.
#include <cstddef>
#include <cstdint>

#include "gtest/gtest.h"
#include "object_alloc/object_alloc.h"
#include "object_alloc/version.h"

namespace object_alloc {
namespace {

// --- Minimal allocators used only as types. ---------------------------------

struct GoodTyped {
  using value_type = int;
  int* Allocate() noexcept { return nullptr; }
  void Deallocate(int*) noexcept {}
};

struct GoodUntyped {
  Layout layout() const noexcept { return Layout{8, 8}; }
  void* Allocate() noexcept { return nullptr; }
  void Deallocate(void*) noexcept {}
};

// Allocate may throw: not an ObjectAlloc (allocation failure must be a value).
struct ThrowingTyped {
  using value_type = int;
  int* Allocate() { return nullptr; }
  void Deallocate(int*) noexcept {}
};

// Returns the wrong pointer type.
struct WrongReturnTyped {
  using value_type = int;
  void* Allocate() noexcept { return nullptr; }
  void Deallocate(int*) noexcept {}
};

// No value_type.
struct NoValueType {
  int* Allocate() noexcept { return nullptr; }
  void Deallocate(int*) noexcept {}
};

// layout() is not const: an untyped allocator's layout must be readable
// through a const reference.
struct NonConstLayout {
  Layout layout() noexcept { return Layout{8, 8}; }
  void* Allocate() noexcept { return nullptr; }
  void Deallocate(void*) noexcept {}
};

struct ThrowingDeallocate {
  Layout layout() const noexcept { return Layout{8, 8}; }
  void* Allocate() noexcept { return nullptr; }
  void Deallocate(void*) {}
};

struct DeclaredThreadSafe : GoodUntyped {
  static constexpr bool kThreadSafe = true;
};
struct DeclaredNotThreadSafe : GoodUntyped {
  static constexpr bool kThreadSafe = false;
};

static_assert(ObjectAlloc<GoodTyped>);
static_assert(!UntypedObjectAlloc<GoodTyped>);
static_assert(UntypedObjectAlloc<GoodUntyped>);
static_assert(!ObjectAlloc<GoodUntyped>);
static_assert(!ObjectAlloc<ThrowingTyped>);
static_assert(!ObjectAlloc<WrongReturnTyped>);
static_assert(!ObjectAlloc<NoValueType>);
static_assert(!UntypedObjectAlloc<NonConstLayout>);
static_assert(!UntypedObjectAlloc<ThrowingDeallocate>);

static_assert(!IsThreadSafe<GoodUntyped>());
static_assert(IsThreadSafe<DeclaredThreadSafe>());
static_assert(!IsThreadSafe<DeclaredNotThreadSafe>());

TEST(LayoutTest, ValidLayouts) {
  EXPECT_TRUE((Layout{1, 1}.IsValid()));
  EXPECT_TRUE((Layout{8, 8}.IsValid()));
  EXPECT_TRUE((Layout{24, 8}.IsValid()));
  EXPECT_TRUE((Layout{8192, 4096}.IsValid()));
}

TEST(LayoutTest, InvalidLayouts) {
  EXPECT_FALSE((Layout{0, 1}.IsValid())) << "size 0";
  EXPECT_FALSE((Layout{8, 0}.IsValid())) << "align 0";
  EXPECT_FALSE((Layout{12, 3}.IsValid())) << "align not a power of two";
  EXPECT_FALSE((Layout{12, 8}.IsValid())) << "size not a multiple of align";
  EXPECT_FALSE((Layout{4, 8}.IsValid())) << "align larger than size";
  EXPECT_FALSE(Layout{}.IsValid()) << "the default Layout is a placeholder";
}

TEST(LayoutTest, LayoutOfMatchesSizeofAndAlignof) {
  struct alignas(32) Over {
    char c[64];
  };
  EXPECT_EQ(LayoutOf<char>(), (Layout{1, 1}));
  EXPECT_EQ(LayoutOf<std::uint64_t>(),
            (Layout{sizeof(std::uint64_t), alignof(std::uint64_t)}));
  EXPECT_EQ(LayoutOf<Over>(), (Layout{64, 32}));
  EXPECT_TRUE(LayoutOf<Over>().IsValid());
  static_assert(LayoutOf<Over>().IsValid(), "usable in constant expressions");
}

TEST(LayoutTest, Equality) {
  EXPECT_EQ((Layout{16, 8}), (Layout{16, 8}));
  EXPECT_NE((Layout{16, 8}), (Layout{16, 16}));
  EXPECT_NE((Layout{16, 8}), (Layout{32, 8}));
}

TEST(VersionTest, MatchesVersionFile) { EXPECT_STREQ(kVersion, "0.1.0"); }

}  // namespace
}  // namespace object_alloc
