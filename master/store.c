/* store.c - SQLite state store; see store.h. */
#include "fmacros.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <sqlite3.h>

struct store {
    sqlite3 *db;                       /* the database */
    int full;                          /* the last commit found no space */
    sqlite3_stmt *ins;                 /* insert a row */
    sqlite3_stmt *del;                 /* delete rows below the cursor */
    sqlite3_stmt *put;                 /* upsert a meta value */
    sqlite3_stmt *padd;                /* add a present line */
    sqlite3_stmt *pget;                /* look one up */
    sqlite3_stmt *pdel;                /* drop those below the cursor */
    sqlite3_stmt *qins;                /* insert a queue message's row */
    sqlite3_stmt *qget;                /* look one up */
    sqlite3_stmt *qdel;                /* forget one */
    int repairing;                     /* the present set is not empty */
    uint64_t epoch;                    /* this open's epoch */
    store_state state;                 /* last committed state */
    store_mark marks[STORE_MAX_MARKS]; /* where the cursor has been */
    size_t nmarks;                     /* their count */
};

static const char *const schema =
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS done(batch INTEGER NOT NULL,"
    " idx INTEGER NOT NULL, status INTEGER NOT NULL,"
    " PRIMARY KEY(batch, idx)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS present(line INTEGER PRIMARY KEY);"
    "CREATE TABLE IF NOT EXISTS qdone(id TEXT PRIMARY KEY,"
    " status INTEGER NOT NULL) WITHOUT ROWID;";

static int64_t meta_int(store *s, const char *k, int64_t def)
{
    sqlite3_stmt *st;
    int64_t v = def;
    if (sqlite3_prepare_v2(s->db, "SELECT v FROM meta WHERE k=?", -1, &st,
                           NULL) != SQLITE_OK)
        return def;
    sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

char *store_get_setting(store *s, const char *k)
{
    sqlite3_stmt *st;
    char *v = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT v FROM meta WHERE k=?", -1, &st,
                           NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_type(st, 0) == SQLITE_TEXT)
        v = xstrdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return v;
}

fo_err store_set_setting(store *s, const char *k, const char *v)
{
    sqlite3_stmt *st;
    const char *sql = v ? "INSERT OR REPLACE INTO meta(k,v) VALUES(?,?)"
                        : "DELETE FROM meta WHERE k=?";
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return FO_ESTORE;
    sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
    if (v)
        sqlite3_bind_text(st, 2, v, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? FO_OK : FO_ESTORE;
}

static int put_int(store *s, const char *k, int64_t v)
{
    sqlite3_reset(s->put);
    sqlite3_bind_text(s->put, 1, k, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s->put, 2, v);
    return sqlite3_step(s->put) == SQLITE_DONE ? 0 : -1;
}

static int put_text(store *s, const char *k, const char *v)
{
    sqlite3_reset(s->put);
    sqlite3_bind_text(s->put, 1, k, -1, SQLITE_STATIC);
    sqlite3_bind_text(s->put, 2, v, -1, SQLITE_STATIC);
    return sqlite3_step(s->put) == SQLITE_DONE ? 0 : -1;
}

static int put_state(store *s, const store_state *st);

/* Marks are stored as one text value, "offset:line:hash;..." (hash in
 * hex). A value that does not parse loses the marks, not the job. */
static void load_marks(store *s)
{
    char *t = store_get_setting(s, "input_marks");
    s->nmarks = 0;
    if (!t)
        return;
    char *p = t;
    while (*p && s->nmarks < STORE_MAX_MARKS) {
        /* "OFFSET:LINE:HASH;" with strto*, which say where they stop. */
        char *e = NULL;
        errno = 0;
        long long off = strtoll(p, &e, 10);
        if (errno || e == p || *e != ':')
            break;
        p = e + 1;
        long long line = strtoll(p, &e, 10);
        if (errno || e == p || *e != ':')
            break;
        p = e + 1;
        unsigned long long h = strtoull(p, &e, 16);
        if (errno || e == p || *e != ';' || h == 0)
            break;
        s->marks[s->nmarks++] = (store_mark){off, line, (uint64_t)h};
        p = e + 1;
    }
    free(t);
}

/* Adds the cursor as a mark, and writes the marks. Marks at or past it go
 * first (a repair reads the input again from the start). A cursor closer
 * to the last mark than 1/32 of the span the marks cover adds none, and
 * when they are full every other one goes; so they stay spread over the
 * whole input, no gap wider than about 1/16 of it. */
static int put_marks(store *s, const store_cursor *c)
{
    size_t before = s->nmarks;
    while (s->nmarks && s->marks[s->nmarks - 1].offset >= c->offset)
        s->nmarks--;
    int add = 1;
    if (s->nmarks >= 2) {
        int64_t span = s->marks[s->nmarks - 1].offset - s->marks[0].offset;
        add = c->offset - s->marks[s->nmarks - 1].offset >=
              span / (STORE_MAX_MARKS / 2);
    }
    if (!add && s->nmarks == before)
        return 0;
    if (add && s->nmarks == STORE_MAX_MARKS) {
        for (size_t i = 0; i < STORE_MAX_MARKS / 2; i++)
            s->marks[i] = s->marks[2 * i];
        s->nmarks = STORE_MAX_MARKS / 2;
    }
    if (add)
        s->marks[s->nmarks++] = (store_mark){c->offset, c->line_no, c->hash};
    char text[STORE_MAX_MARKS * 64], *p = text;
    text[0] = '\0';
    for (size_t i = 0; i < s->nmarks; i++)
        p += snprintf(p, sizeof text - (size_t)(p - text), "%lld:%lld:%llx;",
                      (long long)s->marks[i].offset,
                      (long long)s->marks[i].line_no,
                      (unsigned long long)s->marks[i].hash);
    return put_text(s, "input_marks", text);
}

const store_mark *store_input_marks(const store *s, size_t *n)
{
    *n = s->nmarks;
    return s->marks;
}

/* Names the first field in which two identity objects differ. */
static void identity_diff(const char *was, const char *now, char *err,
                          size_t errlen)
{
    json_t *a = json_loads(was, 0, NULL), *b = json_loads(now, 0, NULL);
    const char *k;
    json_t *v;
    int found = 0;
    json_object_foreach(b, k, v)
    {
        json_t *o = json_object_get(a, k);
        if (!o || !json_equal(o, v)) {
            char *so = o ? json_dumps(o, JSON_ENCODE_ANY) : xstrdup("none");
            char *sn = json_dumps(v, JSON_ENCODE_ANY);
            snprintf(err, errlen,
                     "it holds the state of a different job: %s was %.200s, "
                     "now %.200s",
                     k, so, sn);
            free(so);
            free(sn);
            found = 1;
            break;
        }
    }
    if (!found)
        snprintf(err, errlen, "it holds the state of a different job");
    json_decref(a);
    json_decref(b);
}

fo_err store_open(const char *dir, const char *identity, store **out, char *err,
                  size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/state.db", dir);
    store *s = xcalloc(1, sizeof *s);
    fo_err rc = FO_ESTORE;
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_NOFOLLOW,
                        NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path,
                 s->db ? sqlite3_errmsg(s->db) : "cannot open");
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 2000);
    char *emsg = NULL;
    /* FULL: with WAL, NORMAL may lose the last commits on power loss. */
    if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
                     NULL, NULL, &emsg) != SQLITE_OK ||
        sqlite3_exec(s->db, schema, NULL, NULL, &emsg) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, emsg ? emsg : "error");
        sqlite3_free(emsg);
        goto fail;
    }
    /* Check the file really is ours before trusting any of it. */
    if (sqlite3_exec(s->db, "PRAGMA quick_check", NULL, NULL, &emsg) !=
        SQLITE_OK) {
        snprintf(err, errlen, "%s is damaged: %s", path, emsg ? emsg : "error");
        sqlite3_free(emsg);
        goto fail;
    }
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO meta(k,v) "
                           "VALUES(?,?)",
                           -1, &s->put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO done(batch,idx,"
                           "status) VALUES(?,?,?)",
                           -1, &s->ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "DELETE FROM done WHERE batch < ?", -1,
                           &s->del, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db,
                           "INSERT OR IGNORE INTO present(line) "
                           "VALUES(?)",
                           -1, &s->padd, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "SELECT 1 FROM present WHERE line=?", -1,
                           &s->pget, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "DELETE FROM present WHERE line < ?", -1,
                           &s->pdel, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO qdone(id,status) "
                           "VALUES(?,?)",
                           -1, &s->qins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "SELECT 1 FROM qdone WHERE id=?", -1,
                           &s->qget, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "DELETE FROM qdone WHERE id=?", -1, &s->qdel,
                           NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    char *was = store_get_setting(s, "identity");
    if (was && strcmp(was, identity) != 0) {
        identity_diff(was, identity, err, errlen);
        free(was);
        rc = FO_EMISMATCH;
        goto fail;
    }
    free(was);
    s->epoch = (uint64_t)meta_int(s, "epoch", 0) + 1;
    store_state *st = &s->state;
    st->cursor.offset = meta_int(s, "cursor_offset", 0);
    st->cursor.line_no = meta_int(s, "cursor_line", 1);
    st->cursor.batch = (uint64_t)meta_int(s, "cursor_batch", 0);
    st->cursor.hash = (uint64_t)meta_int(s, "cursor_hash", 0);
    load_marks(s);
    st->results_size = meta_int(s, "results_size", 0);
    st->batches_size = meta_int(s, "batches_size", 0);
    st->batches_scan = meta_int(s, "batches_scan_from", 0);
    st->finished = (int)meta_int(s, "finished", 0);
    st->totals.items = meta_int(s, "items", 0);
    st->totals.ok = meta_int(s, "ok", 0);
    st->totals.failed = meta_int(s, "failed", 0);
    st->totals.invalid = meta_int(s, "invalid", 0);
    st->totals.cancelled = meta_int(s, "cancelled", 0);
    st->totals.attempts = meta_int(s, "attempts", 0);
    st->totals.throttled = meta_int(s, "throttled", 0);
    st->totals.active_ms = meta_int(s, "active_ms", 0);
    s->repairing = meta_int(s, "repairing", 0) != 0;
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
        put_text(s, "identity", identity) ||
        put_int(s, "epoch", (int64_t)s->epoch) ||
        sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(s->db));
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        goto fail;
    }
    *out = s;
    return FO_OK;
fail:
    store_close(&s);
    return rc;
}

void store_close(store **sp)
{
    store *s = *sp;
    if (!s)
        return;
    sqlite3_finalize(s->ins);
    sqlite3_finalize(s->del);
    sqlite3_finalize(s->put);
    sqlite3_finalize(s->padd);
    sqlite3_finalize(s->pget);
    sqlite3_finalize(s->pdel);
    sqlite3_finalize(s->qins);
    sqlite3_finalize(s->qget);
    sqlite3_finalize(s->qdel);
    sqlite3_close(s->db);
    FO_FREE(sp);
}

uint64_t store_epoch(const store *s)
{
    return s->epoch;
}

const store_state *store_get_state(const store *s)
{
    return &s->state;
}

fo_err store_each_row(store *s, void (*fn)(void *ctx, const store_row *row),
                      void *ctx)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT batch, idx, status FROM done "
                           "ORDER BY batch, idx",
                           -1, &st, NULL) != SQLITE_OK)
        return FO_ESTORE;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        store_row row = {(uint64_t)sqlite3_column_int64(st, 0),
                         (uint32_t)sqlite3_column_int64(st, 1),
                         (item_status)sqlite3_column_int(st, 2), NULL};
        fn(ctx, &row);
    }
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? FO_OK : FO_ESTORE;
}

int store_message_done(store *s, const char *id)
{
    sqlite3_reset(s->qget);
    sqlite3_bind_text(s->qget, 1, id, -1, SQLITE_STATIC);
    int r = sqlite3_step(s->qget);
    sqlite3_reset(s->qget);
    return r == SQLITE_ROW;
}

fo_err store_commit(store *s, const store_row *rows, size_t n,
                    const char *const *forget, size_t nforget,
                    const store_state *st, char *err, size_t errlen)
{
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    for (size_t i = 0; i < nforget; i++) {
        sqlite3_reset(s->qdel);
        sqlite3_bind_text(s->qdel, 1, forget[i], -1, SQLITE_STATIC);
        if (sqlite3_step(s->qdel) != SQLITE_DONE)
            goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        if (rows[i].msg_id) {
            sqlite3_reset(s->qins);
            sqlite3_bind_text(s->qins, 1, rows[i].msg_id, -1, SQLITE_STATIC);
            sqlite3_bind_int(s->qins, 2, (int)rows[i].status);
            if (sqlite3_step(s->qins) != SQLITE_DONE)
                goto fail;
            continue;
        }
        sqlite3_reset(s->ins);
        sqlite3_bind_int64(s->ins, 1, (int64_t)rows[i].batch);
        sqlite3_bind_int64(s->ins, 2, rows[i].idx);
        sqlite3_bind_int(s->ins, 3, (int)rows[i].status);
        if (sqlite3_step(s->ins) != SQLITE_DONE)
            goto fail;
    }
    if (st->cursor.batch != s->state.cursor.batch) {
        sqlite3_reset(s->del);
        sqlite3_bind_int64(s->del, 1, (int64_t)st->cursor.batch);
        if (sqlite3_step(s->del) != SQLITE_DONE)
            goto fail;
    }
    if (s->repairing && st->cursor.line_no != s->state.cursor.line_no) {
        sqlite3_reset(s->pdel);
        sqlite3_bind_int64(s->pdel, 1, st->cursor.line_no);
        if (sqlite3_step(s->pdel) != SQLITE_DONE)
            goto fail;
    }
    if (s->repairing && st->finished && put_int(s, "repairing", 0))
        goto fail;
    if (put_state(s, st))
        goto fail;
    store_mark saved[STORE_MAX_MARKS];
    size_t nsaved = s->nmarks;
    memcpy(saved, s->marks, sizeof saved);
    if (st->cursor.hash && st->cursor.offset != s->state.cursor.offset &&
        put_marks(s, &st->cursor))
        goto fail_marks;
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto fail_marks;
    s->state = *st;
    if (st->finished)
        s->repairing = 0;
    return FO_OK;
fail_marks:
    memcpy(s->marks, saved, sizeof saved);
    s->nmarks = nsaved;
fail:
    s->full = sqlite3_errcode(s->db) == SQLITE_FULL;
    snprintf(err, errlen, "state store commit failed: %s",
             sqlite3_errmsg(s->db));
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return FO_ESTORE;
}

static int put_state(store *s, const store_state *st)
{
    const store_totals *t = &st->totals;
    if (put_int(s, "cursor_offset", st->cursor.offset) ||
        put_int(s, "cursor_line", st->cursor.line_no) ||
        put_int(s, "cursor_batch", (int64_t)st->cursor.batch) ||
        put_int(s, "cursor_hash", (int64_t)st->cursor.hash) ||
        put_int(s, "results_size", st->results_size) ||
        put_int(s, "batches_size", st->batches_size) ||
        put_int(s, "batches_scan_from", st->batches_scan) ||
        put_int(s, "finished", st->finished) || put_int(s, "items", t->items) ||
        put_int(s, "ok", t->ok) || put_int(s, "failed", t->failed) ||
        put_int(s, "invalid", t->invalid) ||
        put_int(s, "cancelled", t->cancelled) ||
        put_int(s, "attempts", t->attempts) ||
        put_int(s, "throttled", t->throttled) ||
        put_int(s, "active_ms", t->active_ms))
        return -1;
    return 0;
}

fo_err store_repair_begin(store *s, char *err, size_t errlen)
{
    if (sqlite3_exec(s->db,
                     "BEGIN IMMEDIATE; DELETE FROM present; "
                     "DELETE FROM done;",
                     NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "state store: %s", sqlite3_errmsg(s->db));
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return FO_ESTORE;
    }
    return FO_OK;
}

fo_err store_repair_add(store *s, int64_t line)
{
    sqlite3_reset(s->padd);
    sqlite3_bind_int64(s->padd, 1, line);
    return sqlite3_step(s->padd) == SQLITE_DONE ? FO_OK : FO_ESTORE;
}

fo_err store_repair_commit(store *s, const store_state *st, char *err,
                           size_t errlen)
{
    if (put_state(s, st) || put_int(s, "repairing", 1) ||
        sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "state store: %s", sqlite3_errmsg(s->db));
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return FO_ESTORE;
    }
    s->state = *st;
    s->repairing = 1;
    return FO_OK;
}

int store_repairing(const store *s)
{
    return s->repairing;
}

int store_present(store *s, int64_t line)
{
    sqlite3_reset(s->pget);
    sqlite3_bind_int64(s->pget, 1, line);
    return sqlite3_step(s->pget) == SQLITE_ROW;
}

int store_full(const store *s)
{
    return s->full;
}
