/*
 * journal: the embedded durable store, one append-only file in state_dir.
 *
 *   state_dir/journal:  "DSCJRNL1" then records, each
 *                       u32 length | u32 crc32(payload) | payload (JSON text)
 *                       (little-endian)
 *
 * Every append is written and fdatasync'd before journal_append returns:
 * the caller delivers an event or answers a write call only after that.
 * Or, within a group commit (journal_batch_begin), written at once and
 * fdatasync'd together by journal_commit, before which the caller
 * delivers and answers nothing of what it appended. A
 * write that fails (disk full, I/O error, file-size limit) is cut off again
 * with ftruncate, so the file never keeps half a record that a later append
 * would bury; if even that fails, the next start finds a torn tail and
 * drops it.
 *
 * Start-up reads records until the first one that is short (a torn tail: a
 * crash mid-write, dropped, never fatal) or whose checksum or JSON is bad
 * (corruption). What follows a bad record is unreadable by definition, so
 * the valid prefix is kept and the caller is told (it then starts a new
 * epoch). Either way the file is cut back to the valid prefix.
 *
 * Compaction writes a whole new file (a snapshot of the state plus the
 * retained events) to .journal.tmp, fsyncs it, renames it over journal and
 * fsyncs the directory: a crash at any point leaves one complete file.
 * A background compaction (journal_rewrite_start) writes and fsyncs the
 * snapshot on a thread of its own while appends go on to the old file;
 * each is also kept, and journal_rewrite_poll, once the thread is done,
 * writes them after the snapshot, fdatasyncs, renames and switches: the
 * caller's thread waits for those few records, not the whole file.
 *
 * This module knows bytes and files, not what the records mean (evlog.c).
 */
#ifndef DISCOVERYD_JOURNAL_H
#define DISCOVERYD_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cJSON.h>

#include "metrics.h"

#define JOURNAL_RECORD_MAX                                                     \
	(64u << 20) /* a record larger than this is corrupt */

struct journal_rw; /* a background compaction, journal.c */

struct journal {
	int fd;     /* the open journal, O_APPEND; -1 when none */
	int dir_fd; /* state_dir, for fsync after rename */
	char path[4096];
	char tmp_path[4096];
	off_t size;             /* bytes in the file */
	off_t synced;           /* of them, made durable by a sync */
	size_t records;         /* records in the file */
	struct histogram fsync; /* write + fdatasync of each append, or of
				   each group commit, from its first write */
	uint64_t failures;      /* appends that could not be made durable */
	bool batch;             /* in a group commit: appends wait for it */
	size_t unsynced;        /* records written since the last fdatasync */
	int64_t batch_t0_us;    /* the first of them: when it was written */
	uint64_t commits;       /* fdatasyncs of a group commit */
	uint64_t committed;     /* records they made durable */
	struct journal_rw *rw;  /* a background compaction; NULL: none */
};

/* What start-up found wrong, if anything. */
struct journal_damage {
	bool torn;    /* a short last record, dropped */
	bool corrupt; /* a bad checksum or JSON: the rest dropped */
	size_t dropped_bytes;
	size_t valid_records;
};

/*
 * Open (creating state_dir and the file if needed) and read every valid
 * record into *records, a cJSON array the caller owns (empty for a new
 * journal). A number that a double would not print back as written is a
 * raw node holding its text (proto_json_exact), so records read back byte
 * for byte. Returns 0, or -1 with a message in err when the journal cannot
 * be opened or created at all.
 */
int journal_open(struct journal *j, const char *state_dir, cJSON **records,
		 struct journal_damage *damage, char *err, size_t errlen);

/* The same for state_dir/name (and .name.tmp): a journal of another
 * module's records (a webhook's cursor, webhook_cursor.c). */
int journal_open_named(struct journal *j, const char *state_dir,
		       const char *name, cJSON **records,
		       struct journal_damage *damage, char *err, size_t errlen);

/* Append one record and make it durable (in a group commit: write it,
 * and let journal_commit make it durable). 0, or -1 (errno set; nothing
 * of the record is left in the file). */
int journal_append(struct journal *j, const char *json, size_t len);

/*
 * Group commit: the appends up to journal_commit are written as they come
 * and made durable by one fdatasync. The fsync histogram counts each
 * commit once, from its first write to the end of its fdatasync. commit
 * returns 0 (every record since begin is durable, or there were none),
 * or -1 (errno set): the fdatasync failed, and what the kernel kept of
 * those records is unknown (after a failed fdatasync Linux may drop the
 * pages and report success to the next); they are cut off the file again
 * (best effort), and the caller must not go on as if they were durable,
 * nor retry.
 */
void journal_batch_begin(struct journal *j);
int journal_commit(struct journal *j);

/*
 * Replace the whole journal with these n records, atomically. 0, or -1
 * (errno set; the old journal is untouched and still in use).
 */
int journal_rewrite(struct journal *j, char *const *records, size_t n);

/*
 * The same in the background: records must stay as they are until
 * journal_rewrite_poll has said 1 or -1 (or journal_close returned).
 * Appends meanwhile go to the old file and are kept for the new one. 0,
 * or -1 (errno set; EBUSY: one runs already; the old journal goes on).
 */
int journal_rewrite_start(struct journal *j, char *const *records, size_t n);
/* The caller's thread, any time: 0 while none is done (or none runs),
 * 1 when the new file just became the journal, -1 when the compaction
 * failed (errno set; the old journal goes on, the new one is gone). */
int journal_rewrite_poll(struct journal *j);

void journal_close(struct journal *j);

#endif
