// Prints the options reference table of elfc/OPTIONS.md from the options
// table itself (elfmalloc/options.h), so that the document cannot drift:
// options_doc_test compares the two. Regenerate after changing the table:
//   bazel run //elfc:options_md > /tmp/t && (edit OPTIONS.md between the
//   GENERATED markers)
#include <cinttypes>
#include <cstdio>

#include "elfmalloc/options.h"

namespace {

const char* TypeName(elfmalloc::OptionType t) {
  switch (t) {
    case elfmalloc::OptionType::kUnsigned:
      return "unsigned";
    case elfmalloc::OptionType::kMilliseconds:
      return "milliseconds";
    case elfmalloc::OptionType::kMebibytes:
      return "MiB";
    case elfmalloc::OptionType::kBool:
      return "boolean";
    case elfmalloc::OptionType::kPath:
      return "file name";
  }
  return "?";
}

}  // namespace

int main() {
  std::printf(
      "| Variable | Name (`elfc_set_option`) | Type | Default | Range | "
      "Run time | Meaning |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const elfmalloc::OptionSpec& s : elfmalloc::kOptionSpecs) {
    char dflt[32];
    char range[64];
    if (s.type == elfmalloc::OptionType::kPath) {
      std::snprintf(dflt, sizeof(dflt), "unset");
      std::snprintf(range, sizeof(range), "up to %zu bytes",
                    elfmalloc::kMaxPathLength);
    } else if (s.type == elfmalloc::OptionType::kBool) {
      std::snprintf(dflt, sizeof(dflt), "%s",
                    s.default_value != 0 ? "true" : "false");
      std::snprintf(range, sizeof(range), "1/0, true/false, yes/no, on/off");
    } else {
      if (s.alias) {
        std::snprintf(dflt, sizeof(dflt), "unset");
      } else {
        std::snprintf(dflt, sizeof(dflt), "%" PRIu64, s.default_value);
      }
      std::snprintf(range, sizeof(range), "%" PRIu64 "..%" PRIu64,
                    s.min_value, s.max_value);
    }
    std::printf("| `%s` | `%s` | %s | %s | %s | %s | %s |\n", s.env, s.name,
                TypeName(s.type), dflt, range, s.runtime ? "yes" : "no",
                s.meaning);
  }
  return 0;
}
