#include "writer_service/lease_fence.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/lease.h"
#include "common/status_macros.h"
#include "writer_service/copy_text.h"

namespace etl {
namespace {

struct LeaseRow {
  int64_t epoch = 0;
  bool live = false;  // A collector holds an unexpired lease.
  std::string owner;
};

absl::Status Judge(absl::string_view job_id, int64_t epoch, const LeaseRow& row) {
  if (epoch > 0) {
    if (row.epoch <= epoch) return absl::OkStatus();
    return LeaseLostError(absl::StrCat("job ", job_id, " is at lease epoch ", row.epoch,
                                       ", this write carries epoch ", epoch,
                                       " (another collector took the job over)"));
  }
  if (!row.live) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("job ", job_id, " is leased by collector ", LossyUtf8(row.owner),
                   "; only its owner may write it (send its lease_epoch)"));
}

// A PostgreSQL text[] literal. Job ids never contain NUL (validated before).
std::string TextArrayLiteral(const std::vector<absl::string_view>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char c : values[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

constexpr const char* kLeaseColumns =
    "job_id, lease_epoch, "
    "(owner <> '' AND lease_expires_at IS NOT NULL AND lease_expires_at > now())::int, owner";

}  // namespace

absl::Status CheckLeaseLocked(PgConnection* conn, const std::string& job_id, int64_t epoch) {
  ASSIGN_OR_RETURN(PgResult res, conn->Query(absl::StrCat("SELECT ", kLeaseColumns,
                                                          " FROM etl_jobs WHERE job_id = $1 "
                                                          "FOR SHARE"),
                                             {PgParam::Text(job_id)}));
  if (res.rows() == 0) return absl::NotFoundError(absl::StrCat("no job ", job_id));
  LeaseRow row{res.GetInt(0, 1), res.GetInt(0, 2) != 0, res.Get(0, 3)};
  return Judge(job_id, epoch, row);
}

absl::StatusOr<std::vector<absl::Status>> CheckLeasesLocked(
    PgConnection* conn, const std::vector<std::pair<absl::string_view, int64_t>>& writes) {
  std::vector<absl::string_view> ids;
  for (const auto& w : writes) ids.push_back(w.first);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  std::vector<absl::Status> out(writes.size());
  if (ids.empty()) return out;
  // Locked in job id order, as everywhere rows of several jobs are locked: no deadlock.
  ASSIGN_OR_RETURN(PgResult res,
                   conn->Query(absl::StrCat("SELECT ", kLeaseColumns,
                                            " FROM etl_jobs WHERE job_id = ANY($1::text[]) "
                                            "ORDER BY job_id FOR SHARE"),
                               {PgParam::Text(TextArrayLiteral(ids))}));
  absl::flat_hash_map<std::string, LeaseRow> rows;
  for (int r = 0; r < res.rows(); ++r) {
    rows[res.Get(r, 0)] = LeaseRow{res.GetInt(r, 1), res.GetInt(r, 2) != 0, res.Get(r, 3)};
  }
  for (size_t i = 0; i < writes.size(); ++i) {
    auto it = rows.find(writes[i].first);
    if (it != rows.end()) out[i] = Judge(writes[i].first, writes[i].second, it->second);
  }
  return out;
}

}  // namespace etl
