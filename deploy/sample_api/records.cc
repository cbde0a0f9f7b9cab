#include "deploy/sample_api/records.h"

#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace etl::sample_api {
namespace {

// 2023-01-01 as days since the epoch: the first record's date.
constexpr int64_t kFirstDay = 19358;

// splitmix64: a cheap, well-mixed hash so every field looks random yet is a pure function of i.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t Seed(absl::string_view cliente, absl::string_view rota) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (char c : cliente) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  h = (h ^ '/') * 1099511628211ULL;
  for (char c : rota) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  return h;
}

// JSON-ready (already escaped) fragments.
constexpr const char* kNames[] = {
    "José da Silva", "Zoë Ñúñez-Peña", "Анна Петрова", "山田 太郎",
    "李小龙",        "Mário 🚀 Souza",  "Ünal Çelik",   "O'Brien \\\"Ace\\\" Smith",
    "Ωμέγα Λάμδα",   "محمد علي",       "Ngô Bảo Châu", "👩‍💻 Equipe Dev",
};
constexpr const char* kStatuses[] = {"novo",     "pago",      "enviado",
                                     "entregue", "cancelado", "devolvido"};
constexpr const char* kNotes[] = {
    "Entregar na \\\"portaria\\\" \\\\ bloco B\\tapto 12\\nligar antes",
    "Nota fiscal em C:\\\\notas\\\\2023\\\\nf.xml",
    "caf\\u00e9 & p\\u00e3o \\ud83d\\ude00 \\u2014 sem a\\u00e7\\u00facar",
    "",
    "linha 1\\r\\nlinha 2\\u001f fim",
    "</script><b>negrito</b> 'aspas simples' {\\\"json\\\":[1,2]}",
};
constexpr const char* kCities[] = {"São Paulo", "Curitiba", "Москва", "東京", "Köln", "Goiânia"};

template <typename T, size_t N>
constexpr size_t Count(const T (&)[N]) {
  return N;
}

void AppendJsonString(std::string* out, absl::string_view s) {
  out->push_back('"');
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (u < 0x20) {
      absl::StrAppendFormat(out, "\\u%04x", u);
    } else {
      out->push_back(c);
    }
  }
  out->push_back('"');
}

// Appends cents as a decimal number with two fraction digits, e.g. 123456 -> 1234.56.
void AppendMoney(std::string* out, int64_t cents) {
  absl::StrAppend(out, cents / 100, ".");
  int64_t frac = cents % 100;
  out->push_back(static_cast<char>('0' + frac / 10));
  out->push_back(static_cast<char>('0' + frac % 10));
}

void AppendPadded(std::string* out, int64_t v, int width) {
  char buf[32];
  int n = std::snprintf(buf, sizeof(buf), "%0*lld", width, static_cast<long long>(v));
  out->append(buf, n);
}

}  // namespace

int64_t RecordDay(int64_t index, int64_t records_per_day) {
  if (records_per_day <= 0) records_per_day = kDefaultRecordsPerDay;
  return kFirstDay + index / records_per_day;
}

// Civil-from-days and days-from-civil (H. Hinnant's algorithms): exact for the proleptic Gregorian
// calendar without touching time zones.
std::string FormatDay(int64_t z) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t y = yoe + era * 400;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t d = doy - (153 * mp + 2) / 5 + 1;
  int64_t m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) ++y;
  return absl::StrFormat("%04d-%02d-%02d", y, m, d);
}

absl::StatusOr<int64_t> ParseDay(absl::string_view date) {
  int64_t y = 0, m = 0, d = 0;
  if (date.size() != 10 || date[4] != '-' || date[7] != '-' ||
      !absl::SimpleAtoi(date.substr(0, 4), &y) || !absl::SimpleAtoi(date.substr(5, 2), &m) ||
      !absl::SimpleAtoi(date.substr(8, 2), &d) || m < 1 || m > 12 || d < 1 || d > 31) {
    return absl::InvalidArgumentError(absl::StrCat("date \"", date, "\" is not YYYY-MM-DD"));
  }
  static constexpr int kDaysIn[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (d > kDaysIn[m - 1] || (m == 2 && d == 29 && !leap)) {
    return absl::InvalidArgumentError(absl::StrCat("date \"", date, "\" does not exist"));
  }
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

absl::StatusOr<IndexRange> DateWindowRange(int64_t total, absl::string_view start_date,
                                           absl::string_view end_date, int64_t records_per_day) {
  if (records_per_day <= 0) records_per_day = kDefaultRecordsPerDay;
  IndexRange r{0, total < 0 ? 0 : total};
  if (!start_date.empty()) {
    absl::StatusOr<int64_t> day = ParseDay(start_date);
    if (!day.ok()) return day.status();
    int64_t first = (*day - kFirstDay) * records_per_day;
    if (first > r.begin) r.begin = first;
  }
  if (!end_date.empty()) {
    absl::StatusOr<int64_t> day = ParseDay(end_date);
    if (!day.ok()) return day.status();
    int64_t last_excl = (*day - kFirstDay + 1) * records_per_day;
    if (last_excl < r.end) r.end = last_excl;
  }
  if (r.end < r.begin) r.end = r.begin;
  return r;
}

void AppendRecord(std::string* out, absl::string_view cliente, absl::string_view rota,
                  int64_t index, int64_t records_per_day) {
  const uint64_t h = Mix(Seed(cliente, rota) ^ Mix(static_cast<uint64_t>(index)));
  const uint64_t h2 = Mix(h);
  const int64_t id = RecordId(index);
  const int64_t day = RecordDay(index, records_per_day);
  // Consecutive records share their day: format it once per thread and day (a hot path of
  // benchmarks).
  thread_local int64_t cached_day = -1;
  thread_local std::string date;
  if (day != cached_day) {
    date = FormatDay(day);
    cached_day = day;
  }
  const int64_t customer_id = static_cast<int64_t>(h % 90000) + 10000;

  absl::StrAppend(out, "{\"id\":", id, ",\"cliente_id\":");
  AppendJsonString(out, cliente);
  absl::StrAppend(out, ",\"status\":\"", kStatuses[(h >> 8) % Count(kStatuses)],
                  "\",\"created_at\":\"", date, "T");
  const int64_t secs = static_cast<int64_t>(h2 % 86400);
  AppendPadded(out, secs / 3600, 2);
  out->push_back(':');
  AppendPadded(out, secs / 60 % 60, 2);
  out->push_back(':');
  AppendPadded(out, secs % 60, 2);
  absl::StrAppend(out, "Z\",\"customer\":{\"id\":", customer_id, ",\"name\":\"",
                  kNames[(h >> 16) % Count(kNames)], "\",\"city\":\"",
                  kCities[(h >> 24) % Count(kCities)], "\"},\"paid\":", (h & 1) ? "true" : "false",
                  ",\"coupon\":");
  if ((h >> 3) % 4 == 0) {
    absl::StrAppend(out, "\"DESC", (h >> 32) % 50, "\"");
  } else {
    out->append("null");
  }

  // Items: 1..3, each priced in cents; the total is their exact sum.
  const int items = 1 + static_cast<int>((h >> 40) % 2);
  int64_t total_cents = 0;
  out->append(",\"items\":[");
  for (int k = 0; k < items; ++k) {
    const uint64_t hk = Mix(h2 + static_cast<uint64_t>(k));
    const int64_t qty = 1 + static_cast<int64_t>(hk % 5);
    const int64_t price = 100 + static_cast<int64_t>((hk >> 8) % 99900);
    total_cents += qty * price;
    if (k > 0) out->push_back(',');
    out->append("{\"sku\":\"SKU-");
    AppendPadded(out, static_cast<int64_t>((hk >> 20) % 100000), 5);
    absl::StrAppend(out, "\",\"qty\":", qty, ",\"price\":");
    AppendMoney(out, price);
    out->push_back('}');
  }
  out->append("],\"amount\":");
  AppendMoney(out, total_cents);
  // 2^53 + 1 + 2i: never exactly representable as a double; 2^64 + 1 + (i mod 400000): beyond
  // uint64.
  absl::StrAppend(out, ",\"seq53\":", int64_t{9007199254740993} + 2 * (index % (int64_t{1} << 40)),
                  ",\"big_counter\":18446744073709", 551617 + index % 400000, ",\"note\":\"",
                  kNotes[(h >> 48) % Count(kNotes)], "\"}");
}

std::string Record(absl::string_view cliente, absl::string_view rota, int64_t index,
                   int64_t records_per_day) {
  std::string out;
  AppendRecord(&out, cliente, rota, index, records_per_day);
  return out;
}

}  // namespace etl::sample_api
