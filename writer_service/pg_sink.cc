#include "writer_service/pg_sink.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"
#include "common/names.h"
#include "common/status_macros.h"
#include "writer_service/copy_binary.h"
#include "writer_service/copy_text.h"
#include "writer_service/lease_fence.h"
#include "writer_service/pg_schema.h"
#include "writer_service/write_modes.h"

namespace etl {

// Pages per ledger upsert statement (9 parameters each; PostgreSQL allows 65535 parameters).
constexpr size_t kLedgerRowsPerStatement = 1000;
// Dead-letter reasons are cut to this many bytes (PostgreSQL's messages quote the record).
constexpr size_t kMaxReasonBytes = 1000;
// Registered job ids remembered per sink (then forgotten and looked up again).
constexpr size_t kMaxKnownJobs = 100000;

namespace {

// A fast 64-bit digest of a page's records and natural keys (8 bytes per step). It only has to tell
// a re-sent page with other content from the committed one, not resist an adversary.
class Digest {
 public:
  void Add(absl::string_view bytes) {
    Mix(bytes.size());
    size_t i = 0;
    for (; i + 8 <= bytes.size(); i += 8) {
      uint64_t w;
      std::memcpy(&w, bytes.data() + i, 8);
      Mix(w);
    }
    uint64_t tail = 0;
    std::memcpy(&tail, bytes.data() + i, bytes.size() - i);
    Mix(tail);
  }
  std::string Hex(int64_t records) const {
    return absl::StrFormat("v1:%d:%016x", records, h_ ^ (h_ >> 29));
  }

 private:
  void Mix(uint64_t w) {
    h_ ^= w * 0xff51afd7ed558ccdULL;
    h_ = ((h_ << 31) | (h_ >> 33)) * 0x9e3779b97f4a7c15ULL;
  }
  uint64_t h_ = 0x243f6a8885a308d3ULL;
};

// A text[] literal for an array parameter: {"a","b"} with backslash and quote escaped.
std::string TextArray(const std::vector<absl::string_view>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out.push_back(',');
    out.push_back('"');
    for (char c : values[i]) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

// Errors after which the whole batch is tried again (connection lost, serialization failure or
// deadlock, lock timeout, a raw table dropped under us). Any other error is permanent for the page
// that caused it.
bool RetriesWholeBatch(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsAborted(s) || absl::IsNotFound(s);
}

}  // namespace

struct PgRecordSink::DeadLetter {
  size_t page_index;
  uint32_t record_index;
  std::string reason;
};

// The state of one batch while it is being committed (rebuilt on every attempt).
struct PgRecordSink::Work {
  struct Record {
    absl::string_view json;
    const std::string* key;        // Natural key or null.
    const std::string* rejection;  // Why the collector refused the record, or null.
  };
  struct Page {
    const QueuedPage* page;
    const JobWriteConfig* config = nullptr;  // Write mode and load table of the page's job.
    std::vector<Record> records;
    std::vector<uint8_t> rejected;  // 1 = goes to the dead-letter table.
    int64_t rejected_count = 0;
    bool duplicate_in_batch = false;
    bool is_new = false;           // The ledger upsert returned it: its records are written now.
    bool rejects_changed = false;  // Isolation found more bad records after the ledger upsert.
    std::string digest;            // Of its records and natural keys (see Digest).
    bool content_differs = false;  // Skipped, and the committed page had another digest.
    absl::Status error;            // Not OK: the page is refused (permanent), nothing written.
  };
  std::vector<Page> pages;
  std::vector<DeadLetter> dead;
  int64_t merge_position = 0;  // MERGE: position of the next staged record (last one wins).
  bool stage_used = false;     // MERGE: the staging table holds rows of an earlier table.

  void Reject(size_t page_index, uint32_t record_index, std::string reason) {
    Page& p = pages[page_index];
    if (p.rejected[record_index]) return;
    p.rejected[record_index] = 1;
    ++p.rejected_count;
    if (reason.size() > kMaxReasonBytes) reason.resize(kMaxReasonBytes);
    dead.push_back(DeadLetter{page_index, record_index, LossyUtf8(reason)});
  }
};

absl::Status PgRecordSink::Connect() {
  conn_.reset();
  ASSIGN_OR_RETURN(conn_, PgConnection::Connect(options_.conninfo, "etl-writer"));
  RETURN_IF_ERROR(conn_->Exec("SET synchronous_commit = on"));
  known_tables_.clear();
  modes_.Reset();
  return EnsureLedgerSchema(conn_.get());
}

absl::Status PgRecordSink::Ping(absl::Duration timeout) {
  // Bounded in time: a hung server (stopped process, dead network) must turn health NOT_SERVING.
  if (conn_ != nullptr && conn_->healthy() && conn_->ExecWithTimeout("SELECT 1", timeout).ok()) {
    return absl::OkStatus();
  }
  conn_.reset();
  // libpq's connect_timeout is in whole seconds, at least 2.
  int connect_timeout_s = std::max<int>(2, static_cast<int>(absl::ToInt64Seconds(timeout)) + 1);
  ASSIGN_OR_RETURN(
      conn_, PgConnection::Connect(options_.conninfo, "etl-writer-health", connect_timeout_s));
  absl::Status s = conn_->ExecWithTimeout("SELECT 1", timeout);
  if (!s.ok()) conn_.reset();
  return s;
}

absl::StatusOr<std::vector<PageResult>> PgRecordSink::CommitPages(
    const std::vector<const QueuedPage*>& pages, const std::string& batch_id) {
  if (conn_ == nullptr || !conn_->healthy()) {
    return absl::UnavailableError("not connected to PostgreSQL");
  }
  const absl::Time started = absl::Now();
  const absl::Duration copy_before = times_.copy, commit_before = times_.commit;
  struct PrepareTimer {  // Whatever is not COPY or COMMIT, on every return path.
    SinkPhaseTimes* t;
    absl::Time started;
    absl::Duration copy_before, commit_before;
    ~PrepareTimer() {
      t->prepare += absl::Now() - started - (t->copy - copy_before) - (t->commit - commit_before);
    }
  } prepare_timer{&times_, started, copy_before, commit_before};
  Work w;
  w.pages.resize(pages.size());
  absl::flat_hash_map<std::pair<absl::string_view, int64_t>, size_t> seen;
  for (size_t i = 0; i < pages.size(); ++i) {
    Work::Page& p = w.pages[i];
    p.page = pages[i];
    p.records.reserve(static_cast<size_t>(p.page->records));
    p.page->ForEachRecordWithRejection(
        [&](absl::string_view json, const std::string* key, const std::string* rejection) {
          p.records.push_back(Work::Record{json, key, rejection});
        });
    p.rejected.assign(p.records.size(), 0);
    absl::StatusOr<const JobWriteConfig*> config =
        modes_.ForJob(conn_.get(), p.page->job_id, p.page->table);
    if (!config.ok()) {
      if (!conn_->healthy()) return absl::UnavailableError(config.status().message());
      return config.status();
    }
    p.config = *config;
    // The same page twice in one batch (a quick re-send): only the first one counts.
    if (!seen.emplace(std::make_pair(absl::string_view(p.page->job_id), p.page->page_number), i)
             .second) {
      p.duplicate_in_batch = true;
      continue;
    }
    Digest digest;
    for (uint32_t r = 0; r < p.records.size(); ++r) {
      digest.Add(p.records[r].json);
      if (p.records[r].key != nullptr) digest.Add(*p.records[r].key);
      absl::Status s = p.records[r].rejection != nullptr
                           ? absl::InvalidArgumentError(*p.records[r].rejection)
                           : PrecheckRecord(p.records[r].json);
      if (s.ok() && p.records[r].key != nullptr) {
        if (p.records[r].key->size() > kMaxPgValueBytes) {
          s = absl::InvalidArgumentError("natural key larger than PostgreSQL's 1 GB value limit");
        } else if (p.records[r].key->find('\0') != std::string::npos) {
          s = absl::InvalidArgumentError("NUL character in natural key");
        } else if (!IsValidUtf8(*p.records[r].key)) {
          s = absl::InvalidArgumentError("natural key is not valid UTF-8");
        }
      }
      if (s.ok() && p.config->mode == v1::MERGE &&
          (p.records[r].key == nullptr || p.records[r].key->empty())) {
        s = absl::InvalidArgumentError("merge mode: the record has no natural key at id_path");
      }
      if (!s.ok()) w.Reject(i, r, std::string(s.message()));
    }
    p.digest = digest.Hex(static_cast<int64_t>(p.records.size()));
  }
  RETURN_IF_ERROR(CheckJobsRegistered(w));
  for (const Work::Page& p : w.pages) {
    if (!p.error.ok() || p.config == nullptr) continue;
    absl::Status s = modes_.EnsureTables(conn_.get(), *p.config);
    if (!s.ok()) {
      if (!conn_->healthy()) return absl::UnavailableError(s.message());
      return s;
    }
  }

  const bool any_page =
      std::any_of(w.pages.begin(), w.pages.end(), [](const Work::Page& p) { return p.error.ok(); });
  absl::Status s = any_page ? CommitInTransaction(w, batch_id) : absl::OkStatus();
  if (!s.ok()) {
    if (conn_->healthy()) conn_->Exec("ROLLBACK").IgnoreError();
    if (absl::IsNotFound(s)) modes_.ForgetTables();  // A raw table was dropped under us.
    if (!conn_->healthy()) return absl::UnavailableError(s.message());
    return s;
  }

  std::vector<PageResult> results(w.pages.size());
  for (size_t i = 0; i < w.pages.size(); ++i) {
    const Work::Page& p = w.pages[i];
    PageResult& r = results[i];
    if (!p.error.ok()) {
      r.kind = PageResult::Kind::kFailed;
      r.error = p.error;
      continue;
    }
    if (!p.is_new) {
      r.kind = PageResult::Kind::kSkipped;
      r.records_skipped = p.page->records;
      r.content_differs = p.content_differs;
      continue;
    }
    r.kind = PageResult::Kind::kCommitted;
    r.records_rejected = p.rejected_count;
    r.records_committed = static_cast<int64_t>(p.records.size()) - p.rejected_count;
    for (size_t k = 0; k < p.records.size(); ++k) {
      if (!p.rejected[k]) r.bytes_committed += static_cast<int64_t>(p.records[k].json.size());
    }
  }
  return results;
}

absl::Status PgRecordSink::CommitInTransaction(Work& w, const std::string& batch_id) {
  RETURN_IF_ERROR(conn_->Exec("BEGIN"));
  RETURN_IF_ERROR(RefuseStaleLeases(w));

  // 1. Ledger rows. Pages the upsert does not return were committed before.
  std::vector<size_t> candidates;
  for (size_t i = 0; i < w.pages.size(); ++i) {
    if (!w.pages[i].duplicate_in_batch && w.pages[i].error.ok()) candidates.push_back(i);
  }
  absl::flat_hash_map<std::pair<std::string, int64_t>, size_t> index;
  for (size_t i : candidates) index[{w.pages[i].page->job_id, w.pages[i].page->page_number}] = i;
  for (size_t start = 0; start < candidates.size(); start += kLedgerRowsPerStatement) {
    size_t end = std::min(candidates.size(), start + kLedgerRowsPerStatement);
    std::string sql =
        "INSERT INTO etl_pages (job_id, page_number, state, page_token, next_page_token, records, "
        "rejected, error, attempts, batch_id, committed_at, updated_at, page_token_raw, "
        "next_page_token_raw, content_digest) VALUES ";
    std::vector<PgParam> params;
    params.push_back(PgParam::Text(batch_id));
    for (size_t k = start; k < end; ++k) {
      const Work::Page& p = w.pages[candidates[k]];
      size_t b = params.size();
      absl::StrAppend(&sql, k == start ? "" : ",", "($", b + 1, ",$", b + 2,
                      "::bigint,'committed',$", b + 3, ",$", b + 4, ",$", b + 5, "::bigint,$",
                      b + 6, "::bigint,'',1,$1,now(),now(),$", b + 7, "::bytea,$", b + 8,
                      "::bytea,$", b + 9, ")");
      params.push_back(PgParam::Text(p.page->job_id));
      params.push_back(PgParam::Text(absl::StrCat(p.page->page_number)));
      params.push_back(TokenText(p.page->page_token));
      params.push_back(TokenText(p.page->next_page_token));
      params.push_back(
          PgParam::Text(absl::StrCat(static_cast<int64_t>(p.records.size()) - p.rejected_count)));
      params.push_back(PgParam::Text(absl::StrCat(p.rejected_count)));
      params.push_back(TokenRaw(p.page->page_token));
      params.push_back(TokenRaw(p.page->next_page_token));
      params.push_back(PgParam::Text(p.digest));
    }
    absl::StrAppend(&sql,
                    " ON CONFLICT (job_id, page_number) DO UPDATE SET state = 'committed', "
                    "page_token = EXCLUDED.page_token, next_page_token = EXCLUDED.next_page_token, "
                    "page_token_raw = EXCLUDED.page_token_raw, "
                    "next_page_token_raw = EXCLUDED.next_page_token_raw, "
                    "content_digest = EXCLUDED.content_digest, "
                    "records = EXCLUDED.records, rejected = EXCLUDED.rejected, error = '', "
                    "attempts = etl_pages.attempts + 1, batch_id = EXCLUDED.batch_id, "
                    "committed_at = now(), updated_at = now() "
                    "WHERE etl_pages.state <> 'committed' RETURNING job_id, page_number");
    ASSIGN_OR_RETURN(PgResult res, conn_->Query(sql, params));
    for (int r = 0; r < res.rows(); ++r) {
      auto it = index.find(std::make_pair(res.Get(r, 0), res.GetInt(r, 1)));
      if (it != index.end()) w.pages[it->second].is_new = true;
    }
  }
  bool retrying = batch_id == last_failed_batch_id_;
  if (retrying) {
    // The previous attempt of this batch may have committed before the connection broke: its pages
    // carry our batch id. They are ours, not duplicates, and their rows are already in the table.
    ASSIGN_OR_RETURN(PgResult res,
                     conn_->Query("SELECT job_id, page_number FROM etl_pages WHERE batch_id = $1",
                                  {PgParam::Text(batch_id)}));
    for (int r = 0; r < res.rows(); ++r) {
      auto it = index.find(std::make_pair(res.Get(r, 0), res.GetInt(r, 1)));
      if (it != index.end() && !w.pages[it->second].is_new) {
        w.pages[it->second].is_new = true;
        w.pages[it->second].duplicate_in_batch = true;  // Marker: committed earlier, write nothing.
      }
    }
  }

  RETURN_IF_ERROR(CompareSkippedDigests(w, candidates));

  // 2. Records of the new pages, one COPY per raw table, each under a savepoint so a data error
  // can be isolated without losing the ledger rows: a record PostgreSQL refuses (data error,
  // constraint violation) goes to the dead letters, a page hit by any other permanent error is
  // refused alone, and the other pages of the batch commit.
  std::vector<std::string> tables;
  absl::flat_hash_map<std::string, std::vector<size_t>> by_table;
  for (size_t i = 0; i < w.pages.size(); ++i) {
    const Work::Page& p = w.pages[i];
    if (!p.is_new || p.duplicate_in_batch) continue;
    auto [it, inserted] = by_table.try_emplace(p.config->load_table);
    if (inserted) tables.push_back(p.config->load_table);
    it->second.push_back(i);
  }
  const absl::Time copy_started = absl::Now();
  for (const std::string& table : tables) {
    const std::vector<size_t>& idx = by_table[table];
    const bool merge = w.pages[idx[0]].config->mode == v1::MERGE;
    bool keys_unique = true;
    if (merge) {
      RETURN_IF_ERROR(modes_.EnsureStage(conn_.get()));
      if (w.stage_used) RETURN_IF_ERROR(conn_->Exec(ClearStageSql()));
      w.stage_used = true;
      absl::flat_hash_set<absl::string_view> keys;
      for (size_t i : idx) {
        const Work::Page& p = w.pages[i];
        for (size_t r = 0; r < p.records.size() && keys_unique; ++r) {
          if (!p.rejected[r]) keys_unique = keys.insert(*p.records[r].key).second;
        }
      }
    }
    RETURN_IF_ERROR(conn_->Exec("SAVEPOINT etl_table"));
    absl::Status s = CopyRecords(table, w, idx);
    if (s.ok()) {
      RETURN_IF_ERROR(conn_->Exec("RELEASE SAVEPOINT etl_table"));
      if (merge) RETURN_IF_ERROR(conn_->Exec(MergeFromStageSql(table, keys_unique)));
      continue;
    }
    if (RetriesWholeBatch(s)) return s;
    LogWarning("COPY into ", table, " failed (", s.message().substr(0, 300),
               "); isolating by page and record");
    RETURN_IF_ERROR(conn_->Exec("ROLLBACK TO SAVEPOINT etl_table"));
    RETURN_IF_ERROR(conn_->Exec("RELEASE SAVEPOINT etl_table"));
    for (size_t i : idx) {
      Work::Page& p = w.pages[i];
      std::vector<uint32_t> good;
      for (uint32_t r = 0; r < p.records.size(); ++r) {
        if (!p.rejected[r]) good.push_back(r);
      }
      size_t before = w.dead.size();
      RETURN_IF_ERROR(conn_->Exec("SAVEPOINT etl_page"));
      absl::Status ps = CopyIsolating(table, w, i, std::move(good));
      if (ps.ok()) {
        RETURN_IF_ERROR(conn_->Exec("RELEASE SAVEPOINT etl_page"));
        if (w.dead.size() != before) p.rejects_changed = true;
        continue;
      }
      if (RetriesWholeBatch(ps)) return ps;
      // Permanent for this page: nothing of it is written; its ledger row says failed and why.
      RETURN_IF_ERROR(conn_->Exec("ROLLBACK TO SAVEPOINT etl_page"));
      RETURN_IF_ERROR(conn_->Exec("RELEASE SAVEPOINT etl_page"));
      p.error = absl::Status(ps.code(), absl::StrCat("page ", p.page->page_number, " of job ",
                                                     p.page->job_id, " refused: ", ps.message()));
      RETURN_IF_ERROR(
          conn_
              ->Query(
                  "UPDATE etl_pages SET state = 'failed', error = $3, records = 0, "
                  "rejected = 0, batch_id = NULL, committed_at = NULL, updated_at = now() "
                  "WHERE job_id = $1 AND page_number = $2::bigint",
                  {PgParam::Text(p.page->job_id), PgParam::Text(absl::StrCat(p.page->page_number)),
                   PgParam::Text(LossyUtf8(p.error.message().substr(0, kMaxReasonBytes)))})
              .status());
    }
    if (merge) RETURN_IF_ERROR(conn_->Exec(MergeFromStageSql(table, keys_unique)));
  }
  times_.copy += absl::Now() - copy_started;

  // 3. Dead letters: exact bytes (bytea) plus a readable text copy.
  for (const DeadLetter& d : w.dead) {
    const Work::Page& p = w.pages[d.page_index];
    if (!p.is_new || p.duplicate_in_batch || !p.error.ok()) continue;
    const Work::Record& rec = p.records[d.record_index];
    RETURN_IF_ERROR(
        conn_
            ->Query(
                "INSERT INTO etl_dead_letters (job_id, page_number, record_index, table_name, "
                "raw, raw_text, natural_key, reason) VALUES ($1, $2::bigint, $3::integer, $4, "
                "$5, $6, $7, $8)",
                {PgParam::Text(p.page->job_id), PgParam::Text(absl::StrCat(p.page->page_number)),
                 PgParam::Text(absl::StrCat(d.record_index)), PgParam::Text(p.page->table),
                 PgParam::Bytes(std::string(rec.json)), PgParam::Text(LossyUtf8(rec.json)),
                 rec.key == nullptr ? PgParam::Null() : PgParam::Text(LossyUtf8(*rec.key)),
                 PgParam::Text(d.reason)})
            .status());
  }
  for (const Work::Page& p : w.pages) {
    if (!p.rejects_changed || !p.error.ok()) continue;
    RETURN_IF_ERROR(conn_
                        ->Query("UPDATE etl_pages SET records = $3::bigint, rejected = $4::bigint "
                                "WHERE job_id = $1 AND page_number = $2::bigint",
                                {PgParam::Text(p.page->job_id),
                                 PgParam::Text(absl::StrCat(p.page->page_number)),
                                 PgParam::Text(absl::StrCat(static_cast<int64_t>(p.records.size()) -
                                                            p.rejected_count)),
                                 PgParam::Text(absl::StrCat(p.rejected_count))})
                        .status());
  }
  // 4. Incremental marks, with the records that carry them.
  RETURN_IF_ERROR(AdvanceCursors(w));
  const absl::Time commit_started = absl::Now();
  absl::Status commit = conn_->Exec("COMMIT");
  times_.commit += absl::Now() - commit_started;
  if (!commit.ok()) {
    // The outcome is unknown when the connection broke during COMMIT: remember the batch so the
    // retry can recognise pages this attempt committed.
    last_failed_batch_id_ = batch_id;
    return commit;
  }
  return absl::OkStatus();
}

absl::Status PgRecordSink::CopyRecords(const std::string& table, Work& w,
                                       const std::vector<size_t>& page_indexes) {
  const bool merge = !page_indexes.empty() && w.pages[page_indexes[0]].config->mode == v1::MERGE;
  // Binary format: no escaping here, and the backend reads fields by length (see copy_binary.h).
  RETURN_IF_ERROR(conn_->CopyBegin(
      absl::StrCat(merge ? MergeStageCopySql()
                         : absl::StrCat("COPY ", QuoteIdentifier(table),
                                        " (payload, natural_key, job_id, page_number) FROM STDIN"),
                   " (FORMAT binary)")));
  const int16_t fields = merge ? 5 : 4;
  buffer_.clear();
  AppendCopyBinaryHeader(&buffer_);
  std::string suffix;
  for (size_t i : page_indexes) {
    const Work::Page& p = w.pages[i];
    suffix.clear();
    AppendCopyBinaryText(&suffix, p.page->job_id);
    AppendCopyBinaryInt8(&suffix, p.page->page_number);
    for (size_t r = 0; r < p.records.size(); ++r) {
      if (p.rejected[r]) continue;
      const Work::Record& rec = p.records[r];  // Sizes were checked: see PrecheckRecord.
      AppendCopyBinaryRow(&buffer_, fields);
      AppendCopyBinaryJsonb(&buffer_, rec.json);
      if (rec.key == nullptr) {
        AppendCopyBinaryNull(&buffer_);
      } else {
        AppendCopyBinaryText(&buffer_, *rec.key);
      }
      buffer_.append(suffix);
      if (merge) AppendCopyBinaryInt8(&buffer_, w.merge_position++);
      if (buffer_.size() >= options_.copy_chunk_bytes) {
        RETURN_IF_ERROR(conn_->CopyPut(buffer_));
        buffer_.clear();
      }
    }
  }
  AppendCopyBinaryTrailer(&buffer_);
  RETURN_IF_ERROR(conn_->CopyPut(buffer_));
  buffer_.clear();
  return conn_->CopyEnd();
}

absl::Status PgRecordSink::RefuseStaleLeases(Work& w) {
  std::vector<std::pair<absl::string_view, int64_t>> writes;
  for (const Work::Page& p : w.pages) writes.emplace_back(p.page->job_id, p.page->lease_epoch);
  ASSIGN_OR_RETURN(std::vector<absl::Status> verdicts, CheckLeasesLocked(conn_.get(), writes));
  for (size_t i = 0; i < w.pages.size(); ++i) {
    if (!verdicts[i].ok() && w.pages[i].error.ok()) w.pages[i].error = verdicts[i];
  }
  return absl::OkStatus();
}

absl::Status PgRecordSink::CheckJobsRegistered(Work& w) {
  std::vector<absl::string_view> unknown;
  for (const Work::Page& p : w.pages) {
    absl::string_view id = p.page->job_id;
    if (!known_jobs_.contains(id) &&
        std::find(unknown.begin(), unknown.end(), id) == unknown.end()) {
      unknown.push_back(id);
    }
  }
  if (unknown.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(PgResult res,
                   conn_->Query("SELECT job_id FROM etl_jobs WHERE job_id = ANY($1::text[])",
                                {PgParam::Text(TextArray(unknown))}));
  if (known_jobs_.size() + static_cast<size_t>(res.rows()) > kMaxKnownJobs) known_jobs_.clear();
  for (int r = 0; r < res.rows(); ++r) known_jobs_.insert(res.Get(r, 0));
  bool refused = false;
  for (Work::Page& p : w.pages) {
    if (known_jobs_.contains(p.page->job_id)) continue;
    refused = true;
    p.error = absl::FailedPreconditionError(
        absl::StrCat("job ", p.page->job_id, " is not registered (RegisterJob comes first)"));
  }
  // The write-mode cache loaded a default config for the unknown job: forget it, so the job's own
  // mode applies once it is registered.
  if (refused) modes_.Reset();
  return absl::OkStatus();
}

absl::Status PgRecordSink::CompareSkippedDigests(Work& w, const std::vector<size_t>& candidates) {
  std::vector<absl::string_view> jobs, pages;
  std::vector<std::string> page_numbers;
  absl::flat_hash_map<std::pair<std::string, int64_t>, size_t> skipped;
  for (size_t i : candidates) {
    const Work::Page& p = w.pages[i];
    if (p.is_new) continue;
    skipped[{p.page->job_id, p.page->page_number}] = i;
    jobs.push_back(p.page->job_id);
    page_numbers.push_back(absl::StrCat(p.page->page_number));
  }
  if (skipped.empty()) return absl::OkStatus();
  for (const std::string& n : page_numbers) pages.push_back(n);
  ASSIGN_OR_RETURN(PgResult res,
                   conn_->Query("SELECT p.job_id, p.page_number, p.content_digest FROM etl_pages p "
                                "JOIN unnest($1::text[], $2::bigint[]) AS k(job_id, page_number) "
                                "USING (job_id, page_number) WHERE p.content_digest IS NOT NULL",
                                {PgParam::Text(TextArray(jobs)), PgParam::Text(TextArray(pages))}));
  for (int r = 0; r < res.rows(); ++r) {
    auto it = skipped.find(std::make_pair(res.Get(r, 0), res.GetInt(r, 1)));
    if (it == skipped.end()) continue;
    Work::Page& p = w.pages[it->second];
    p.content_differs = res.Get(r, 2) != p.digest;
  }
  return absl::OkStatus();
}

absl::Status PgRecordSink::CopySubset(const std::string& table, Work& w, size_t page_index,
                                      const std::vector<uint32_t>& records) {
  // Temporarily mark everything outside `records` as rejected so CopyRecords skips it.
  Work::Page& p = w.pages[page_index];
  std::vector<uint8_t> saved = p.rejected;
  std::fill(p.rejected.begin(), p.rejected.end(), 1);
  for (uint32_t r : records) p.rejected[r] = 0;
  absl::Status s = CopyRecords(table, w, {page_index});
  p.rejected = std::move(saved);
  return s;
}

absl::Status PgRecordSink::CopyIsolating(const std::string& table, Work& w, size_t page_index,
                                         std::vector<uint32_t> records) {
  if (records.empty()) return absl::OkStatus();
  RETURN_IF_ERROR(conn_->Exec("SAVEPOINT etl_isolate"));
  absl::Status s = CopySubset(table, w, page_index, records);
  if (s.ok()) return conn_->Exec("RELEASE SAVEPOINT etl_isolate");
  if (!absl::IsInvalidArgument(s)) return s;
  RETURN_IF_ERROR(conn_->Exec("ROLLBACK TO SAVEPOINT etl_isolate"));
  RETURN_IF_ERROR(conn_->Exec("RELEASE SAVEPOINT etl_isolate"));
  if (records.size() == 1) {
    w.Reject(page_index, records[0], std::string(s.message()));
    return absl::OkStatus();
  }
  size_t half = records.size() / 2;
  std::vector<uint32_t> second(records.begin() + static_cast<std::ptrdiff_t>(half), records.end());
  records.resize(half);
  RETURN_IF_ERROR(CopyIsolating(table, w, page_index, std::move(records)));
  return CopyIsolating(table, w, page_index, std::move(second));
}

absl::Status PgRecordSink::AdvanceCursors(Work& w) {
  // The greatest value per mark over the records committed now; marks in key order (lock order).
  std::map<CursorKey, std::pair<CursorValue, const std::string*>> best;
  for (const Work::Page& p : w.pages) {
    if (!p.is_new || p.duplicate_in_batch || !p.error.ok() || p.config->cursor_path.empty()) {
      continue;
    }
    CursorKey key{p.config->cliente_id, p.config->rota, p.config->cursor_path,
                  p.config->cursor_type};
    for (size_t r = 0; r < p.records.size(); ++r) {
      if (p.rejected[r]) continue;
      std::optional<CursorValue> v =
          cursor_extractor_.Extract(p.records[r].json, key.cursor_path, key.cursor_type);
      if (!v.has_value()) continue;
      auto it = best.find(key);
      if (it == best.end()) {
        best.emplace(key, std::make_pair(*std::move(v), &p.page->job_id));
      } else if (v->sort_key > it->second.first.sort_key) {
        it->second = std::make_pair(*std::move(v), &p.page->job_id);
      }
    }
  }
  for (const auto& [key, value] : best) {
    RETURN_IF_ERROR(AdvanceCursor(conn_.get(), key, value.first, *value.second));
  }
  return absl::OkStatus();
}

}  // namespace etl
