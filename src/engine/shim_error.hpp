// The error convention of the project's C++ shims (`ops`, `dist`): a failed call sets `*error`
// to a malloc'd copy of the message, which Rust takes with `ops::take_message` and frees with
// `wb_free_error`.
#pragma once

#include <cstdlib>
#include <cstring>

namespace wb {
inline char *copy_message(const char *message) {
  const size_t len = std::strlen(message);
  char *out = static_cast<char *>(std::malloc(len + 1));
  if (out != nullptr) {
    std::memcpy(out, message, len + 1);
  }
  return out;
}
} // namespace wb
