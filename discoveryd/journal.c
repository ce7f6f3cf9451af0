/*
 * journal: the append-only, checksummed record file (see journal.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "clock.h"
#include "journal.h"
#include "proto.h"

#define MAGIC     "DSCJRNL1"
#define MAGIC_LEN 8
#define HEAD_LEN  8

static void put_u32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint32_t checksum(const char *data, size_t len)
{
	return (uint32_t)crc32(0L, (const Bytef *)data, (uInt)len);
}

/* write(2) all of buf, retrying short writes. */
static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Every byte of iov[0, n) (n at most IOV_MAX), past short writes; iov is
 * used up. */
static int writev_all(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t w = writev(fd, iov, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		for (; n > 0 && (size_t)w >= iov->iov_len; iov++, n--)
			w -= (ssize_t)iov->iov_len;
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/* A record's head, in head; -1 (EMSGSIZE) when it is too long. */
static int record_head(unsigned char *head, const char *json, size_t len)
{
	if (len > JOURNAL_RECORD_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	put_u32(head, (uint32_t)len);
	put_u32(head + 4, checksum(json, len));
	return 0;
}

/* One record, head and payload, in one system call. */
static int write_record(int fd, const char *json, size_t len)
{
	unsigned char head[HEAD_LEN];
	struct iovec iov[2] = { { head, HEAD_LEN }, { (char *)json, len } };

	if (record_head(head, json, len) != 0)
		return -1;
	return writev_all(fd, iov, 2);
}

/* Records per writev when a whole journal is written (two iovecs each). */
#define REWRITE_BATCH 256

/* n records, REWRITE_BATCH to a system call; their bytes added to *size. */
static int write_records(int fd, char *const *records, size_t n, off_t *size)
{
	unsigned char heads[REWRITE_BATCH][HEAD_LEN];
	struct iovec iov[2 * REWRITE_BATCH];

	for (size_t i = 0; i < n; i += REWRITE_BATCH) {
		size_t k = n - i < REWRITE_BATCH ? n - i : REWRITE_BATCH;

		for (size_t r = 0; r < k; r++) {
			const char *json = records[i + r];
			size_t len = strlen(json);

			if (record_head(heads[r], json, len) != 0)
				return -1;
			iov[2 * r] = (struct iovec){ heads[r], HEAD_LEN };
			iov[2 * r + 1] = (struct iovec){ (char *)json, len };
			*size += (off_t)(HEAD_LEN + len);
		}
		if (writev_all(fd, iov, (int)(2 * k)) != 0)
			return -1;
	}
	return 0;
}

static int mkdir_p(const char *dir)
{
	char path[4096];

	if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0750) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return mkdir(path, 0750) != 0 && errno != EEXIST ? -1 : 0;
}

/* Read the whole file; NULL with errno on failure. */
static char *slurp(int fd, size_t *len)
{
	struct stat st;
	char *buf;
	size_t got = 0;

	if (fstat(fd, &st) != 0)
		return NULL;
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return NULL;
	while (got < (size_t)st.st_size) {
		ssize_t n = pread(fd, buf + got, (size_t)st.st_size - got,
				  (off_t)got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	*len = got;
	return buf;
}

/* Parse records after the magic; returns the length of the valid prefix. */
static size_t parse_records(const char *buf, size_t len, cJSON *out,
			    struct journal_damage *damage)
{
	size_t off = MAGIC_LEN;

	while (off < len) {
		uint32_t rlen, crc;
		cJSON *rec = NULL;

		if (len - off < HEAD_LEN) {
			damage->torn = true;
			break;
		}
		rlen = get_u32((const unsigned char *)buf + off);
		crc = get_u32((const unsigned char *)buf + off + 4);
		if (rlen > JOURNAL_RECORD_MAX) {
			damage->corrupt = true;
			break;
		}
		if (len - off - HEAD_LEN < rlen) {
			damage->torn = true;
			break;
		}
		if (checksum(buf + off + HEAD_LEN, rlen) != crc ||
		    !(rec = cJSON_ParseWithLength(buf + off + HEAD_LEN,
						  rlen)) ||
		    !cJSON_IsObject(rec)) {
			if (rec)
				cJSON_Delete(rec);
			damage->corrupt = true;
			break;
		}
		/* Numbers a double would change keep their text (as an
		 * event's value must), so a record reads back as written; one
		 * it cannot walk (out of memory) keeps doubles, not corrupt. */
		proto_json_exact(rec, buf + off + HEAD_LEN, rlen);
		cJSON_AddItemToArray(out, rec);
		damage->valid_records++;
		off += HEAD_LEN + rlen;
	}
	damage->dropped_bytes = len - off;
	return off;
}

static int fail(char *err, size_t errlen, const char *what, const char *path)
{
	snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
	return -1;
}

int journal_open(struct journal *j, const char *state_dir, cJSON **records,
		 struct journal_damage *damage, char *err, size_t errlen)
{
	return journal_open_named(j, state_dir, "journal", records, damage, err,
				  errlen);
}

int journal_open_named(struct journal *j, const char *state_dir,
		       const char *name, cJSON **records,
		       struct journal_damage *damage, char *err, size_t errlen)
{
	size_t len = 0, valid;
	char *buf;

	memset(j, 0, sizeof(*j));
	memset(damage, 0, sizeof(*damage));
	j->fd = j->dir_fd = -1;
	*records = NULL;
	if (snprintf(j->path, sizeof(j->path), "%s/%s", state_dir, name) >=
		    (int)sizeof(j->path) ||
	    /* A dot first: no journal's own name (a webhook's is a service
	     * name) can be another's temporary file. */
	    snprintf(j->tmp_path, sizeof(j->tmp_path), "%s/.%s.tmp", state_dir,
		     name) >= (int)sizeof(j->tmp_path)) {
		snprintf(err, errlen, "state_dir is too long");
		return -1;
	}
	if (mkdir_p(state_dir) != 0)
		return fail(err, errlen, "cannot create", state_dir);
	j->dir_fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (j->dir_fd < 0)
		return fail(err, errlen, "cannot open", state_dir);
	j->fd = open(j->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (j->fd < 0)
		return fail(err, errlen, "cannot open", j->path);
	buf = slurp(j->fd, &len);
	if (!buf)
		return fail(err, errlen, "cannot read", j->path);
	*records = cJSON_CreateArray();
	if (len < MAGIC_LEN || memcmp(buf, MAGIC, MAGIC_LEN) != 0) {
		/* A new file, or one that never got its magic in full (a crash
		 * on the very first write), or not ours at all. */
		if (len > 0 &&
		    (len >= MAGIC_LEN || memcmp(buf, MAGIC, len) != 0))
			damage->corrupt = true;
		damage->dropped_bytes = len;
		free(buf);
		if (ftruncate(j->fd, 0) != 0 ||
		    write_all(j->fd, MAGIC, MAGIC_LEN) != 0 ||
		    fsync(j->fd) != 0)
			return fail(err, errlen, "cannot initialise", j->path);
		j->size = j->synced = MAGIC_LEN;
		return 0;
	}
	valid = parse_records(buf, len, *records, damage);
	free(buf);
	if (valid < len &&
	    (ftruncate(j->fd, (off_t)valid) != 0 || fsync(j->fd) != 0))
		return fail(err, errlen, "cannot cut the damaged tail of",
			    j->path);
	j->size = j->synced = (off_t)valid;
	j->records = damage->valid_records;
	return 0;
}

/* ---- compaction in the background ------------------------------------ */

struct journal_rw {
	pthread_t thread;
	int fd; /* the new file's */
	/* The snapshot (the caller's), written by the thread. */
	char *const *records;
	size_t n;
	off_t size; /* the thread's: bytes written */
	int error;  /* the thread's: its errno, 0 when all went well */
	atomic_bool done;
	/* Appended since the snapshot was taken: they follow it. */
	char **tail;
	size_t n_tail, cap_tail;
	bool lost; /* no memory to keep one: the compaction is dropped */
};

static void rw_free(struct journal_rw *rw)
{
	for (size_t i = 0; i < rw->n_tail; i++)
		free(rw->tail[i]);
	free(rw->tail);
	free(rw);
}

/* The old file, unlinked by the rename: its last close frees its blocks,
 * milliseconds for a big one, so a thread of its own does it. */
static void *close_thread(void *arg)
{
	close((int)(intptr_t)arg);
	return NULL;
}

static void close_later(int fd)
{
	pthread_attr_t attr;
	pthread_t t;
	int rc = pthread_attr_init(&attr);

	if (rc == 0 &&
	    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0)
		rc = pthread_create(&t, &attr, close_thread,
				    (void *)(intptr_t)fd);
	else
		rc = -1;
	if (rc == 0)
		pthread_attr_destroy(&attr);
	else
		close(fd);
}

static void *rw_thread(void *arg)
{
	struct journal_rw *rw = arg;

	rw->size = MAGIC_LEN;
	if (write_all(rw->fd, MAGIC, MAGIC_LEN) != 0 ||
	    write_records(rw->fd, rw->records, rw->n, &rw->size) != 0 ||
	    fsync(rw->fd) != 0)
		rw->error = errno ? errno : EIO;
	atomic_store(&rw->done, true);
	return NULL;
}

/* An append made while a compaction runs: the new file gets it too. */
static void keep_for_rewrite(struct journal *j, const char *json, size_t len)
{
	struct journal_rw *rw = j->rw;
	char *copy;

	if (!rw || rw->lost)
		return;
	if (rw->n_tail == rw->cap_tail) {
		size_t cap = rw->cap_tail ? 2 * rw->cap_tail : 64;
		char **grown = realloc(rw->tail, cap * sizeof(*grown));

		if (!grown) {
			rw->lost = true;
			return;
		}
		rw->tail = grown;
		rw->cap_tail = cap;
	}
	if (!(copy = malloc(len + 1))) {
		rw->lost = true;
		return;
	}
	memcpy(copy, json, len);
	copy[len] = '\0';
	rw->tail[rw->n_tail++] = copy;
}

int journal_rewrite_start(struct journal *j, char *const *records, size_t n)
{
	struct journal_rw *rw;
	int rc;

	if (j->rw || j->fd < 0 || !(rw = calloc(1, sizeof(*rw)))) {
		errno = j->rw ? EBUSY : j->fd < 0 ? EBADF : ENOMEM;
		return -1;
	}
	rw->records = records;
	rw->n = n;
	rw->fd = open(j->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		      0640);
	if (rw->fd < 0) {
		rc = errno;
		rw_free(rw);
		errno = rc;
		return -1;
	}
	if ((rc = pthread_create(&rw->thread, NULL, rw_thread, rw)) != 0) {
		close(rw->fd);
		unlink(j->tmp_path);
		rw_free(rw);
		errno = rc;
		return -1;
	}
	j->rw = rw;
	return 0;
}

/* The thread is done, its file dropped: the old journal goes on. */
static int rw_drop(struct journal *j, int error)
{
	close(j->rw->fd);
	unlink(j->tmp_path);
	rw_free(j->rw);
	j->rw = NULL;
	errno = error;
	return -1;
}

int journal_rewrite_poll(struct journal *j)
{
	struct journal_rw *rw = j->rw;
	off_t size;

	if (!rw || !atomic_load(&rw->done))
		return 0;
	pthread_join(rw->thread, NULL);
	if (rw->error || rw->lost)
		return rw_drop(j, rw->error ? rw->error : ENOMEM);
	/* What came since the snapshot, then the switch. The records of a
	 * group commit not yet made are among them: durable here first. */
	size = rw->size;
	if (write_records(rw->fd, rw->tail, rw->n_tail, &size) != 0 ||
	    fdatasync(rw->fd) != 0 || rename(j->tmp_path, j->path) != 0)
		return rw_drop(j, errno);
	fsync(j->dir_fd);
	close_later(j->fd);
	j->fd = rw->fd;
	if (fcntl(j->fd, F_SETFL, O_APPEND) != 0) {
		close(j->fd);
		j->fd = open(j->path, O_RDWR | O_APPEND | O_CLOEXEC);
	}
	j->size = j->synced = size;
	j->records = rw->n + rw->n_tail;
	rw->fd = -1;
	rw_free(rw);
	j->rw = NULL;
	return j->fd < 0 ? -1 : 1;
}

/* ---- appends ------------------------------------------------------------ */

int journal_append(struct journal *j, const char *json, size_t len)
{
	int64_t t0;
	int saved;

	if (j->fd < 0) {
		errno = EBADF;
		return -1;
	}
	t0 = clock_mono_us();
	if (j->batch && write_record(j->fd, json, len) == 0) {
		if (!j->unsynced++)
			j->batch_t0_us = t0;
		j->size += (off_t)(HEAD_LEN + len);
		j->records++;
		keep_for_rewrite(j, json, len);
		return 0;
	}
	if (!j->batch && write_record(j->fd, json, len) == 0 &&
	    fdatasync(j->fd) == 0) {
		keep_for_rewrite(j, json, len);
		histogram_observe(&j->fsync,
				  (double)(clock_mono_us() - t0) / 1e6);
		j->size += (off_t)(HEAD_LEN + len);
		j->synced = j->size;
		j->records++;
		return 0;
	}
	j->failures++;
	/* Take back whatever part of the record reached the file. */
	saved = errno;
	if (ftruncate(j->fd, j->size) != 0)
		(void)0; /* the next start drops the torn tail */
	errno = saved;
	return -1;
}

void journal_batch_begin(struct journal *j)
{
	j->batch = j->fd >= 0;
}

int journal_commit(struct journal *j)
{
	size_t n = j->unsynced;

	j->batch = false;
	if (!n)
		return 0;
	j->unsynced = 0;
	if (fdatasync(j->fd) != 0) {
		int saved = errno;

		/* Never answered, not known to be on disk: not history. */
		j->failures += n;
		if (ftruncate(j->fd, j->synced) == 0)
			(void)fdatasync(j->fd);
		j->size = j->synced;
		errno = saved;
		return -1;
	}
	j->synced = j->size;
	histogram_observe(&j->fsync,
			  (double)(clock_mono_us() - j->batch_t0_us) / 1e6);
	j->commits++;
	j->committed += n;
	return 0;
}

int journal_rewrite(struct journal *j, char *const *records, size_t n)
{
	int fd, saved;
	off_t size = MAGIC_LEN;

	fd = open(j->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	if (write_all(fd, MAGIC, MAGIC_LEN) != 0 ||
	    write_records(fd, records, n, &size) != 0)
		goto fail;
	if (fsync(fd) != 0 || rename(j->tmp_path, j->path) != 0)
		goto fail;
	fsync(j->dir_fd);
	close(j->fd);
	/* The renamed file is the journal now; append to it from here on. */
	if (fcntl(fd, F_SETFL, O_APPEND) != 0) {
		close(fd);
		j->fd = open(j->path, O_RDWR | O_APPEND | O_CLOEXEC);
	} else {
		j->fd = fd;
	}
	j->size = j->synced = size;
	j->records = n;
	return j->fd < 0 ? -1 : 0;
fail:
	saved = errno;
	close(fd);
	unlink(j->tmp_path);
	errno = saved;
	return -1;
}

void journal_close(struct journal *j)
{
	if (j->rw) { /* unfinished: the old file is whole */
		pthread_join(j->rw->thread, NULL);
		rw_drop(j, 0);
	}
	if (j->fd >= 0)
		close(j->fd);
	if (j->dir_fd >= 0)
		close(j->dir_fd);
	j->fd = j->dir_fd = -1;
}
