#include "writer_service/copy_binary.h"

namespace etl {
namespace {

// Network byte order, as the binary format requires.
void AppendBigEndian(std::string* out, uint64_t value, int bytes) {
  char buf[8];
  for (int i = bytes - 1; i >= 0; --i) {
    buf[i] = static_cast<char>(value & 0xFF);
    value >>= 8;
  }
  out->append(buf, static_cast<size_t>(bytes));
}

void AppendLength(std::string* out, size_t length) {
  AppendBigEndian(out, static_cast<uint32_t>(length), 4);
}

}  // namespace

void AppendCopyBinaryHeader(std::string* out) {
  static constexpr char kSignature[] = "PGCOPY\n\377\r\n";  // Plus its terminating NUL: 11 bytes.
  out->append(kSignature, sizeof(kSignature));
  AppendBigEndian(out, 0, 4);  // Flags: no OIDs.
  AppendBigEndian(out, 0, 4);  // Header extension: none.
}

void AppendCopyBinaryTrailer(std::string* out) { AppendBigEndian(out, 0xFFFF, 2); }

void AppendCopyBinaryRow(std::string* out, int16_t fields) {
  AppendBigEndian(out, static_cast<uint16_t>(fields), 2);
}

void AppendCopyBinaryJsonb(std::string* out, absl::string_view json) {
  AppendLength(out, json.size() + 1);
  out->push_back('\x01');  // jsonb's binary format version: the JSON text follows.
  out->append(json.data(), json.size());
}

void AppendCopyBinaryText(std::string* out, absl::string_view text) {
  AppendLength(out, text.size());
  out->append(text.data(), text.size());
}

void AppendCopyBinaryInt8(std::string* out, int64_t value) {
  AppendLength(out, 8);
  AppendBigEndian(out, static_cast<uint64_t>(value), 8);
}

void AppendCopyBinaryNull(std::string* out) { AppendBigEndian(out, 0xFFFFFFFF, 4); }

}  // namespace etl
