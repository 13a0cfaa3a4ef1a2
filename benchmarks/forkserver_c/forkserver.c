/* An experimental fork server in C, for benchmarks/forkserver_c.py only: not part
 * of the package. It speaks the protocol of qcgpj_async/executors/_forkserver.py
 * (marshal-ed tuples after a 4-byte little-endian length; only the subset of
 * marshal the pilot sends is read: None, bool, int, str, tuple, list, dict and
 * back-references) and gives the same error messages for the pre-start checks.
 *
 * Why it exists: on a machine whose cores all run jobs, every CPU microsecond
 * the fork server spends per job is taken from the jobs. The Python server costs
 * ~140 us of CPU per start and reap on the test machine, this one ~80. On that
 * machine it did not make batch mode faster (docs/performance.md): it is kept
 * so that the measurement can be repeated elsewhere.
 *
 * Usage: forkserver [python args...] RFD WFD (the last two arguments count, so
 * that it can stand in for "python -I -S _forkserver.py RFD WFD").
 * Environment: QCGPJ_FSC_FORK=1 starts jobs with fork and exec, a pipe telling a
 * failed exec, instead of posix_spawn (which waits for each child's exec);
 * QCGPJ_FSC_TIMES=FILE appends the server's user and system CPU seconds at exit.
 *
 * Every process starts in a session of its own, SIGPIPE and SIGXFSZ at their
 * defaults, in its working directory, with its streams. Its end is seen on a
 * pidfd; what it left in its group is SIGKILLed before it is reaped. When RFD
 * closes, every process still running is SIGKILLed with its group and reaped,
 * then the server exits. SIGINT and SIGTERM do not stop it.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sched.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/* ---------------------------------------------------------------- memory */

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) { perror("qcgpj fork server"); exit(70); }
    return p;
}

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) { perror("qcgpj fork server"); exit(70); }
    return p;
}

static char *xstrndup(const char *s, size_t n) {
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* An arena for one message: freed at once after it is handled. */
typedef struct block { struct block *next; size_t used, size; char data[]; } block;
static block *arena;

static void *alloc(size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!arena || arena->size - arena->used < n) {
        size_t size = n > 65536 ? n : 65536;
        block *b = xmalloc(sizeof(block) + size);
        b->next = arena; b->used = 0; b->size = size;
        arena = b;
    }
    void *p = arena->data + arena->used;
    arena->used += n;
    return p;
}

static void arena_reset(void) {
    while (arena && arena->next) { block *n = arena->next; free(arena); arena = n; }
    if (arena) arena->used = 0;
}

/* A growing byte buffer (events out, message texts). */
typedef struct { char *p; size_t len, cap; } buf;

static void put(buf *b, const void *data, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void putc_(buf *b, char c) { put(b, &c, 1); }
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

/* The strings given, up to a NULL. */
static void cat(buf *b, ...) {
    va_list ap;
    va_start(ap, b);
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *)) puts_(b, s);
    va_end(ap);
}

static void putf(buf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    put(b, tmp, n < 0 ? 0 : ((size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1));
}

/* ------------------------------------------------------- marshal values */

enum { V_NONE, V_INT, V_STR, V_SEQ, V_DICT, V_END };

typedef struct val {
    int kind;
    long long i;        /* V_INT */
    char *s;            /* V_STR: NUL-terminated copy ... */
    size_t len;         /* ... of len bytes (it may hold NUL bytes itself) */
    struct val **items; /* V_SEQ: n items; V_DICT: 2n (key, value) */
    size_t n;
} val;

typedef struct {
    const unsigned char *p, *end;
    val **refs;
    size_t nrefs, caprefs;
    int bad;
} parser;

static val END = {V_END, 0, NULL, 0, NULL, 0};

static int take(parser *ps, size_t n, const unsigned char **out) {
    if ((size_t)(ps->end - ps->p) < n) { ps->bad = 1; return 0; }
    *out = ps->p;
    ps->p += n;
    return 1;
}

static long long le32(const unsigned char *q) {
    return (int32_t)((uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 |
                     (uint32_t)q[3] << 24);
}

static val *new_val(int kind) {
    val *v = alloc(sizeof(val));
    memset(v, 0, sizeof *v);
    v->kind = kind;
    return v;
}

static val *rd(parser *ps, int depth);

static val *rd_seq(parser *ps, val *v, size_t n, int depth) {
    if (n > (size_t)(ps->end - ps->p)) { ps->bad = 1; return NULL; }
    v->kind = V_SEQ;
    v->n = n;
    v->items = alloc(sizeof(val *) * (n ? n : 1));
    for (size_t k = 0; k < n; k++) {
        v->items[k] = rd(ps, depth + 1);
        if (!v->items[k] || v->items[k] == &END) { ps->bad = 1; return NULL; }
    }
    return v;
}

static val *rd(parser *ps, int depth) {
    const unsigned char *q;
    if (depth > 32 || !take(ps, 1, &q)) { ps->bad = 1; return NULL; }
    int code = q[0] & 0x7f, flag = q[0] & 0x80;
    if (code == '0') return &END;
    if (code == 'r') {
        if (!take(ps, 4, &q)) return NULL;
        long long k = le32(q);
        if (k < 0 || (size_t)k >= ps->nrefs || !ps->refs[k]) { ps->bad = 1; return NULL; }
        return ps->refs[k];
    }
    val *v = new_val(V_NONE);
    if (flag) { /* numbered in the order the objects start, as marshal does */
        if (ps->nrefs == ps->caprefs) {
            ps->caprefs = ps->caprefs * 2 + 16;
            ps->refs = xrealloc(ps->refs, sizeof(val *) * ps->caprefs);
        }
        ps->refs[ps->nrefs++] = v;
    }
    size_t n;
    switch (code) {
    case 'N': return v;
    case 'T': case 'F': v->kind = V_INT; v->i = code == 'T'; return v;
    case 'i':
        if (!take(ps, 4, &q)) return NULL;
        v->kind = V_INT; v->i = le32(q);
        return v;
    case 'l': { /* base 2**15 digits: pids and run ids never need more than 63 bits */
        if (!take(ps, 4, &q)) return NULL;
        long long nd = le32(q), size = nd < 0 ? -nd : nd;
        if (size > 4 || !take(ps, (size_t)size * 2, &q)) { ps->bad = 1; return NULL; }
        long long x = 0;
        for (long long d = size - 1; d >= 0; d--) x = x << 15 | (q[2 * d] | q[2 * d + 1] << 8);
        v->kind = V_INT; v->i = nd < 0 ? -x : x;
        return v;
    }
    case 'z': case 'Z':
        if (!take(ps, 1, &q)) return NULL;
        n = q[0];
        goto str;
    case 'a': case 'A': case 'u': case 't':
        if (!take(ps, 4, &q)) return NULL;
        if (le32(q) < 0) { ps->bad = 1; return NULL; }
        n = (size_t)le32(q);
    str:
        if (!take(ps, n, &q)) return NULL;
        v->kind = V_STR; v->len = n;
        v->s = alloc(n + 1);
        memcpy(v->s, q, n);
        v->s[n] = 0;
        return v;
    case ')':
        if (!take(ps, 1, &q)) return NULL;
        return rd_seq(ps, v, q[0], depth);
    case '(': case '[':
        if (!take(ps, 4, &q)) return NULL;
        if (le32(q) < 0) { ps->bad = 1; return NULL; }
        return rd_seq(ps, v, (size_t)le32(q), depth);
    case '{': {
        size_t cap = 16;
        v->kind = V_DICT;
        v->items = alloc(sizeof(val *) * cap);
        for (;;) {
            val *k = rd(ps, depth + 1);
            if (!k) return NULL;
            if (k == &END) return v;
            val *x = rd(ps, depth + 1);
            if (!x || x == &END) { ps->bad = 1; return NULL; }
            if (2 * v->n + 2 > cap) {
                val **bigger = alloc(sizeof(val *) * cap * 2);
                memcpy(bigger, v->items, sizeof(val *) * cap);
                v->items = bigger;
                cap *= 2;
            }
            v->items[2 * v->n] = k;
            v->items[2 * v->n + 1] = x;
            v->n++;
        }
    }
    default:
        ps->bad = 1;
        return NULL;
    }
}

static int is_str(const val *v) { return v && v->kind == V_STR; }
static int has_nul(const val *v) { return strlen(v->s) != v->len; }

/* ------------------------------------------------------------ events out */

static buf out;

static void w32(buf *b, uint32_t x) {
    unsigned char q[4] = {x & 255, x >> 8 & 255, x >> 16 & 255, x >> 24 & 255};
    put(b, q, 4);
}

static void w_int(buf *b, long long x) {
    if (x >= INT32_MIN && x <= INT32_MAX) { putc_(b, 'i'); w32(b, (uint32_t)(int32_t)x); return; }
    /* marshal's long: base 2**15 digits, the sign on the count */
    unsigned long long m = x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x;
    unsigned char d[16];
    int nd = 0;
    while (m) { d[2 * nd] = m & 255; d[2 * nd + 1] = (m >> 8) & 127; m >>= 15; nd++; }
    putc_(b, 'l');
    w32(b, (uint32_t)(int32_t)(x < 0 ? -nd : nd));
    put(b, d, 2 * (size_t)nd);
}

static void event(const char *kind, long long rid, const buf *text, long long number) {
    buf m = {0};
    size_t klen = strlen(kind);
    putc_(&m, ')');
    putc_(&m, 3);
    putc_(&m, 'z');
    putc_(&m, (char)klen);
    put(&m, kind, klen);
    w_int(&m, rid);
    if (text) { putc_(&m, 'u'); w32(&m, (uint32_t)text->len); put(&m, text->p, text->len); }
    else w_int(&m, number);
    w32(&out, (uint32_t)m.len);
    put(&out, m.p, m.len);
    free(m.p);
}

/* Python's repr of a str, for the messages (non-ASCII characters as they are). */
static void repr(buf *b, const char *s, size_t n) {
    int sq = memchr(s, '\'', n) != NULL, dq = memchr(s, '"', n) != NULL;
    char quote = sq && !dq ? '"' : '\'';
    putc_(b, quote);
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c == (unsigned char)quote || c == '\\') { putc_(b, '\\'); putc_(b, (char)c); }
        else if (c == '\t') puts_(b, "\\t");
        else if (c == '\n') puts_(b, "\\n");
        else if (c == '\r') puts_(b, "\\r");
        else if (c < 32 || c == 127) putf(b, "\\x%02x", c);
        else putc_(b, (char)c);
    }
    putc_(b, quote);
}

/* ------------------------------------------------------------------ runs */

typedef struct run {
    long long rid;
    pid_t pid;
    int pidfd;
    int pend;  /* error pipe while the exec is pending */
    struct run *prev, *next;
} run;

static run *runs; /* started and not reaped */
static int ep;

static run *find_run(long long rid) {
    for (run *r = runs; r; r = r->next)
        if (r->rid == rid) return r;
    return NULL;
}

static void killpg_(pid_t pgid, int sig) {
    if (pgid > 0) killpg(pgid, sig); /* ESRCH, EPERM: it ended meanwhile */
}

static void reap(run *r) {
    killpg_(r->pid, SIGKILL); /* leftovers of the group die with the job */
    int status = 0;
    long long code = 0;
    pid_t got;
    do got = waitpid(r->pid, &status, 0); while (got < 0 && errno == EINTR);
    if (got == r->pid) {
        if (WIFEXITED(status)) code = WEXITSTATUS(status);
        else if (WIFSIGNALED(status)) code = -WTERMSIG(status);
    }
    epoll_ctl(ep, EPOLL_CTL_DEL, r->pidfd, NULL);
    close(r->pidfd);
    if (r->prev) r->prev->next = r->next; else runs = r->next;
    if (r->next) r->next->prev = r->prev;
    event("exited", r->rid, NULL, code);
    free(r);
}

static void stop_all(void) {
    for (run *r = runs; r; r = r->next) { killpg_(r->pid, SIGKILL); kill(r->pid, SIGKILL); }
    for (run *r = runs; r; r = r->next) {
        while (waitpid(r->pid, NULL, 0) < 0 && errno == EINTR) {}
    }
}

/* ----------------------------------------------------------- environment */

static char **base_env;       /* "name=value", NULL-terminated */
static size_t n_base;
static char **base_errors;    /* per entry: why it cannot be in an environment, or NULL */

static void free_base(void) {
    for (size_t k = 0; k < n_base; k++) { free(base_env[k]); free(base_errors[k]); }
    free(base_env);
    free(base_errors);
    base_env = NULL; base_errors = NULL; n_base = 0;
}

/* Why "name=value" cannot be in an environment (NULL: it can), as env_entry says. */
static char *entry_error(const val *name, const val *value) {
    buf b = {0};
    if (name->len == 0 || memchr(name->s, '=', name->len)) {
        puts_(&b, "illegal environment variable name ");
        repr(&b, name->s, name->len);
    } else if (has_nul(name) || has_nul(value)) {
        buf e = {0};
        put(&e, name->s, name->len);
        putc_(&e, '=');
        put(&e, value->s, value->len);
        puts_(&b, "embedded null byte in ");
        repr(&b, e.p, e.len);
        free(e.p);
    } else {
        return NULL;
    }
    putc_(&b, 0);
    return b.p;
}

static void set_base(const val *env) {
    free_base();
    base_env = xmalloc(sizeof(char *) * (env->n + 1));
    base_errors = xmalloc(sizeof(char *) * (env->n + 1));
    for (size_t k = 0; k < env->n; k++) {
        const val *name = env->items[2 * k], *value = env->items[2 * k + 1];
        if (!is_str(name) || !is_str(value)) continue;
        base_errors[n_base] = entry_error(name, value);
        char *e = xmalloc(name->len + value->len + 2);
        memcpy(e, name->s, name->len);
        e[name->len] = '=';
        memcpy(e + name->len + 1, value->s, value->len + 1);
        base_env[n_base++] = e;
    }
    base_env[n_base] = NULL;
}

static int same_name(const char *entry, const val *name) {
    return strncmp(entry, name->s, name->len) == 0 && entry[name->len] == '=';
}

/* ------------------------------------------------------------- the launch */

static int devnull = -1;
static int use_fork, pend_fd = -1;
static int *close_fds;
static size_t n_close;
static posix_spawnattr_t attr;

/* Working directories made (a makedirs per start costs more than the spawn). */
#define N_WDS 64
static char *wds[N_WDS];
static size_t next_wd;

/* Programs found in a PATH: (prog, PATH) -> path. */
#define N_PATHS 64
static struct { char *prog, *search, *path; } paths[N_PATHS];
static size_t next_path;

static int wd_known(const char *cwd) {
    for (size_t k = 0; k < N_WDS; k++)
        if (wds[k] && strcmp(wds[k], cwd) == 0) return 1;
    return 0;
}

static void wd_forget(const char *cwd) {
    for (size_t k = 0; k < N_WDS; k++)
        if (wds[k] && strcmp(wds[k], cwd) == 0) { free(wds[k]); wds[k] = NULL; }
}

/* os.makedirs(path, exist_ok=True): 0 or an errno. */
static int makedirs(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0) return S_ISDIR(st.st_mode) ? 0 : EEXIST;
    size_t n = strlen(path);
    char *p = xstrndup(path, n);
    int err = 0;
    for (size_t k = 1; k <= n && !err; k++) {
        if (k < n && p[k] != '/') continue;
        if (k < n && p[k - 1] == '/') continue;
        char c = p[k];
        p[k] = 0;
        if (mkdir(p, 0777) != 0) {
            int e = errno;
            if (e != EEXIST) err = e;
            else if (k == n && !(stat(p, &st) == 0 && S_ISDIR(st.st_mode))) err = EEXIST;
        }
        p[k] = c;
    }
    free(p);
    return err;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* os.path.join's separator: a '/' unless the text so far is empty or ends in one. */
static void join_sep(buf *b) {
    if (b->len && b->p[b->len - 1] != '/') putc_(b, '/');
}

/* The job's PATH search, as Popen does; NULL when not found. Returns a malloc'd string. */
static char *which(const char *prog, const char *search, const char *cwd) {
    if (strchr(prog, '/')) return strdup(prog);
    for (size_t k = 0; k < N_PATHS; k++)
        if (paths[k].prog && strcmp(paths[k].prog, prog) == 0 &&
            strcmp(paths[k].search, search) == 0)
            return strdup(paths[k].path);
    char *first = NULL, *found = NULL;
    int keep = 1;
    const char *d = search;
    for (;;) {
        const char *end = strchr(d, ':');
        size_t dn = end ? (size_t)(end - d) : strlen(d);
        buf cand = {0};
        if (dn == 0 || d[0] != '/') { /* relative to the job's wd: not remembered */
            keep = 0;
            puts_(&cand, cwd);
            join_sep(&cand);
        }
        put(&cand, d, dn);
        join_sep(&cand);
        puts_(&cand, prog);
        putc_(&cand, 0);
        struct stat st;
        if (stat(cand.p, &st) == 0 && S_ISREG(st.st_mode)) {
            if (access(cand.p, X_OK) == 0) { found = cand.p; break; }
            if (!first) { first = cand.p; cand.p = NULL; }
        }
        free(cand.p);
        if (!end) break;
        d = end + 1;
    }
    if (found) free(first); else found = first;
    if (found && keep) {
        size_t k = next_path++ % N_PATHS;
        free(paths[k].prog); free(paths[k].search); free(paths[k].path);
        paths[k].prog = strdup(prog);
        paths[k].search = strdup(search);
        paths[k].path = strdup(found);
    }
    return found;
}

static void path_forget(const char *prog, const char *search) {
    for (size_t k = 0; k < N_PATHS; k++)
        if (paths[k].prog && strcmp(paths[k].prog, prog) == 0 &&
            strcmp(paths[k].search, search) == 0) {
            free(paths[k].prog); free(paths[k].search); free(paths[k].path);
            paths[k].prog = paths[k].search = paths[k].path = NULL;
        }
}

static int high(int fd) {
    if (fd > 2) return fd;
    int h = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    close(fd);
    return h;
}

/* posix_spawn: returns once the child has called exec; 0 or an errno. */
static int spawn_start(const char *path, char **argv, char **envp, const char *cwd,
                       const int fds[3], pid_t *pid) {
    posix_spawn_file_actions_t fa;
    int e = posix_spawn_file_actions_init(&fa);
    if (e) return e;
    e = posix_spawn_file_actions_addchdir_np(&fa, cwd);
    for (int k = 0; k < 3 && !e; k++) e = posix_spawn_file_actions_adddup2(&fa, fds[k], k);
    for (size_t k = 0; k < n_close && !e; k++)
        e = posix_spawn_file_actions_addclose(&fa, close_fds[k]);
    if (!e) e = posix_spawn(pid, path, &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    return e;
}

/* fork and exec (QCGPJ_FSC_FORK): returns at once; 0 or an errno. A failed exec is
 * told on the close-on-exec pipe left in pend_fd, read when it becomes readable. */
static int fork_start(const char *path, char **argv, char **envp, const char *cwd,
                      const int fds[3], pid_t *pid) {
    int pp[2];
    if (pipe2(pp, O_CLOEXEC) != 0) return errno;
    pid_t c = fork();
    if (c == 0) {
        setsid();
        signal(SIGPIPE, SIG_DFL); signal(SIGXFSZ, SIG_DFL);
        signal(SIGINT, SIG_DFL); signal(SIGTERM, SIG_DFL);
        int err = 0;
        if (chdir(cwd) != 0) err = errno;
        for (int k = 0; k < 3 && !err; k++) if (dup2(fds[k], k) < 0) err = errno;
        for (size_t k = 0; k < n_close; k++) close(close_fds[k]);
        if (!err) { execve(path, argv, envp); err = errno; }
        (void)!write(pp[1], &err, sizeof err);
        _exit(127);
    }
    int e = c < 0 ? errno : 0;
    close(pp[1]);
    if (e) { close(pp[0]); return e; }
    *pid = c;
    pend_fd = pp[0];
    return 0;
}

/* The start of one job; 0, or -1 with the message in *why. The checks come in the
 * Python server's order: wd, program, streams, arguments, environment, spawn. */
static int launch(const val *label, val **argv, size_t argc, char **envp, const char *env_error,
                  const char *search, const val *cwd, const val *streams[3], pid_t *pid,
                  buf *why) {
    const char *lbl = label->s;
    if (has_nul(cwd)) { /* os.makedirs raises ValueError: the server's catch-all */
        cat(why, "job ", lbl, ": launch failed: ValueError('embedded null byte')", NULL);
        return -1;
    }
    if (!wd_known(cwd->s)) {
        int e = makedirs(cwd->s);
        if (e) {
            cat(why, "job ", lbl, ": cannot create working directory ", NULL);
            repr(why, cwd->s, cwd->len);
            cat(why, ": ", strerror(e), NULL);
            return -1;
        }
        size_t k = next_wd++ % N_WDS;
        free(wds[k]);
        wds[k] = strdup(cwd->s);
    }
    const val *prog = argv[0];
    char *path = has_nul(prog) && !strchr(prog->s, '/') ? NULL
                 : has_nul(prog) ? strdup(prog->s) : which(prog->s, search, cwd->s);
    if (!path) {
        cat(why, "job ", lbl, ": executable ", NULL);
        repr(why, prog->s, prog->len);
        puts_(why, " not found");
        return -1;
    }
    static const char *what[3] = {"stdin", "stdout", "stderr"};
    int fds[3] = {-1, -1, -1}, rc = -1;
    for (int k = 0; k < 3; k++) {
        const val *s = streams[k];
        if (!s) {
            if (devnull < 0) devnull = high(open("/dev/null", O_RDWR | O_CLOEXEC));
            fds[k] = devnull;
            continue;
        }
        if (k == 2 && streams[1] && s->len == streams[1]->len &&
            memcmp(s->s, streams[1]->s, s->len) == 0) {
            fds[2] = fds[1];
            continue;
        }
        if (has_nul(s)) {
            cat(why, "job ", lbl, ": launch failed: ValueError('embedded null byte')", NULL);
            goto done;
        }
        int flags = k == 0 ? O_RDONLY : O_WRONLY | O_CREAT | O_TRUNC, e = 0;
        if (k) {
            char *dir = xstrndup(s->s, s->len), *slash = strrchr(dir, '/');
            if (slash) { if (slash == dir) slash[1] = 0; else *slash = 0; e = makedirs(dir); }
            else e = ENOENT; /* os.makedirs("") */
            free(dir);
        }
        if (!e) {
            int fd = open(s->s, flags | O_CLOEXEC, 0666);
            if (fd < 0) e = errno;
            else fds[k] = high(fd);
        }
        if (e) {
            cat(why, "job ", lbl, ": cannot open ", what[k], " ", NULL);
            repr(why, s->s, s->len);
            cat(why, ": ", strerror(e), NULL);
            goto done;
        }
    }
    char **cargv = alloc(sizeof(char *) * (argc + 1));
    for (size_t k = 0; k < argc; k++) {
        if (has_nul(argv[k])) {
            cat(why, "job ", lbl, ": cannot start ", NULL);
            repr(why, prog->s, prog->len);
            puts_(why, ": embedded null byte in ");
            repr(why, argv[k]->s, argv[k]->len);
            goto done;
        }
        cargv[k] = argv[k]->s;
    }
    cargv[argc] = NULL;
    if (env_error) {
        cat(why, "job ", lbl, ": cannot start ", NULL);
        repr(why, prog->s, prog->len);
        cat(why, ": ", env_error, NULL);
        goto done;
    }
    for (int attempt = 1; attempt <= 2; attempt++) {
        int e = use_fork ? fork_start(path, cargv, envp, cwd->s, fds, pid)
                         : spawn_start(path, cargv, envp, cwd->s, fds, pid);
        if (!e) { rc = 0; goto done; }
        path_forget(prog->s, search);
        if (attempt == 1 && !is_dir(cwd->s)) { /* removed since it was made */
            wd_forget(cwd->s);
            int m = makedirs(cwd->s);
            if (m) {
                cat(why, "job ", lbl, ": cannot create working directory ", NULL);
                repr(why, cwd->s, cwd->len);
                cat(why, ": ", strerror(m), NULL);
                goto done;
            }
            size_t k = next_wd++ % N_WDS;
            free(wds[k]);
            wds[k] = strdup(cwd->s);
            continue;
        }
        if (e == ENOENT) {
            cat(why, "job ", lbl, ": executable ", NULL);
            repr(why, prog->s, prog->len);
            puts_(why, " not found");
        } else if (e == EACCES) {
            cat(why, "job ", lbl, ": ", NULL);
            repr(why, prog->s, prog->len);
            puts_(why, " is not executable");
        } else {
            cat(why, "job ", lbl, ": cannot start ", NULL);
            repr(why, prog->s, prog->len);
            putf(why, ": [Errno %d] ", e);
            cat(why, strerror(e), ": ", NULL);
            repr(why, path, strlen(path));
        }
        goto done;
    }
done:
    for (int k = 0; k < 3; k++) {
        if (fds[k] >= 0 && fds[k] != devnull && (k == 0 || fds[k] != fds[k - 1])) close(fds[k]);
    }
    free(path);
    return rc;
}

/* ("start", rid, label, argv, set, unset, cwd, stdin, stdout, stderr) */
static void start(val *msg) {
    val **it = msg->items;
    if (msg->n != 10 || it[1]->kind != V_INT || !is_str(it[2]) || it[3]->kind != V_SEQ ||
        it[3]->n == 0 || it[4]->kind != V_DICT || it[5]->kind != V_SEQ || !is_str(it[6])) {
        if (msg->n >= 2 && it[1]->kind == V_INT) {
            buf why = {0};
            puts_(&why, "launch failed: malformed start request");
            event("failed", it[1]->i, &why, 0);
            free(why.p);
        }
        return;
    }
    long long rid = it[1]->i;
    const val *label = it[2], *set = it[4], *unset = it[5], *cwd = it[6];
    const val *streams[3];
    for (int k = 0; k < 3; k++) streams[k] = is_str(it[7 + k]) ? it[7 + k] : NULL;
    for (size_t k = 0; k < it[3]->n; k++)
        if (!is_str(it[3]->items[k])) { set = NULL; break; }
    buf why = {0};
    if (!set) {
        cat(&why, "job ", label->s, ": launch failed: malformed start request", NULL);
        event("failed", rid, &why, 0);
        free(why.p);
        return;
    }
    /* The environment: the base, the job's own variables set, unset ones left out. */
    char **envp = alloc(sizeof(char *) * (n_base + set->n + 1));
    size_t ne = 0;
    const char *search = "/bin:/usr/bin"; /* os.defpath */
    char *error = NULL; /* the first variable that cannot be in it */
    for (size_t k = 0; k < n_base; k++) {
        const char *e = base_env[k];
        int drop = 0;
        for (size_t u = 0; u < unset->n && !drop; u++)
            drop = is_str(unset->items[u]) && same_name(e, unset->items[u]);
        for (size_t s = 0; s < set->n && !drop; s++)
            drop = is_str(set->items[2 * s]) && same_name(e, set->items[2 * s]);
        if (drop) continue;
        envp[ne++] = (char *)e;
        if (!error && base_errors[k]) error = strdup(base_errors[k]);
        if (strncmp(e, "PATH=", 5) == 0) search = e + 5;
    }
    for (size_t s = 0; s < set->n; s++) {
        const val *name = set->items[2 * s], *value = set->items[2 * s + 1];
        if (!is_str(name) || !is_str(value)) continue;
        if (!error) error = entry_error(name, value);
        char *e = alloc(name->len + value->len + 2);
        memcpy(e, name->s, name->len);
        e[name->len] = '=';
        memcpy(e + name->len + 1, value->s, value->len + 1);
        envp[ne++] = e;
        if (name->len == 4 && memcmp(name->s, "PATH", 4) == 0) search = e + 5;
    }
    envp[ne] = NULL;
    pid_t pid = 0;
    int rc = launch(label, it[3]->items, it[3]->n, envp, error, search, cwd, streams, &pid,
                    &why);
    free(error);
    if (rc != 0) {
        event("failed", rid, &why, 0);
        free(why.p);
        return;
    }
    free(why.p);
    if (use_fork) {
        run *r = xmalloc(sizeof(run));
        r->rid = rid; r->pid = pid; r->pidfd = -1; r->pend = pend_fd; r->prev = NULL; r->next = runs;
        pend_fd = -1;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = r};
        epoll_ctl(ep, EPOLL_CTL_ADD, r->pend, &ev);
        if (runs) runs->prev = r;
        runs = r;
        return;
    }
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) fcntl(fd, F_SETFD, FD_CLOEXEC);
    run *r = xmalloc(sizeof(run));
    r->rid = rid; r->pid = pid; r->pidfd = fd; r->pend = -1; r->prev = NULL; r->next = runs;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = r};
    if (fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        /* It cannot be watched: stop it now rather than lose it. */
        int e = errno;
        killpg_(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
        if (fd >= 0) close(fd);
        free(r);
        buf w = {0};
        cat(&w, "job ", label->s, ": cannot watch its process: ", strerror(e), NULL);
        event("failed", rid, &w, 0);
        free(w.p);
        return;
    }
    if (runs) runs->prev = r;
    runs = r;
    event("started", rid, NULL, pid);
}

static void handle(val *msg) {
    if (!msg || msg->kind != V_SEQ || msg->n < 2 || !is_str(msg->items[0])) return;
    const char *kind = msg->items[0]->s;
    if (strcmp(kind, "start") == 0) {
        start(msg);
    } else if (strcmp(kind, "signal") == 0) {
        if (msg->n == 3 && msg->items[1]->kind == V_INT && msg->items[2]->kind == V_INT) {
            run *r = find_run(msg->items[1]->i);
            if (r) killpg_(r->pid, (int)msg->items[2]->i);
        }
    } else if (strcmp(kind, "env") == 0) {
        if (msg->items[1]->kind == V_DICT) set_base(msg->items[1]);
    }
}

/* --------------------------------------------------------------- the loop */

static void on_signal(int sig) { (void)sig; }

static void list_inherited(int rfd, int wfd) {
    /* Descriptors above 2 open and inheritable now: closed in every child. */
    DIR *d = opendir("/proc/self/fd");
    if (!d) return;
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (fd <= 2 || fd == self || fd == rfd || fd == wfd || e->d_name[0] == '.') continue;
        int fl = fcntl(fd, F_GETFD);
        if (fl >= 0 && !(fl & FD_CLOEXEC)) {
            close_fds = xrealloc(close_fds, sizeof(int) * (n_close + 1));
            close_fds[n_close++] = fd;
        }
    }
    closedir(d);
}

static int flush_out(int wfd) {
    while (out.len) {
        ssize_t n = write(wfd, out.p, out.len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno == EAGAIN ? 0 : -1;
        }
        memmove(out.p, out.p + n, out.len - (size_t)n);
        out.len -= (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s RFD WFD (started by the qcgpj_async pilot)\n", argv[0]);
        return 2;
    }
    int rfd = atoi(argv[argc - 2]), wfd = atoi(argv[argc - 1]); /* after python's -I -S script */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* handled: back at the default in every child */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
    signal(SIGCHLD, SIG_DFL); /* its children are reaped here, not by the kernel */
    fcntl(rfd, F_SETFD, FD_CLOEXEC);
    fcntl(wfd, F_SETFD, FD_CLOEXEC);
    fcntl(wfd, F_SETFL, fcntl(wfd, F_GETFL) | O_NONBLOCK);
    list_inherited(rfd, wfd);

    sigset_t defaults;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGXFSZ);
    if (posix_spawnattr_init(&attr) || posix_spawnattr_setsigdefault(&attr, &defaults) ||
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF)) {
        fprintf(stderr, "qcgpj fork server: posix_spawn attributes cannot be set\n");
        return 70;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, rfd, &ev) != 0) {
        perror("qcgpj fork server: epoll");
        return 70;
    }
    static run out_tag; /* EPOLLOUT on wfd, registered only while output waits */
    int writing = 0;
    unsigned char *in = xmalloc(1 << 16);
    size_t have = 0, cap = 1 << 16;
    parser ps = {0};
    struct epoll_event evs[64];
    use_fork = getenv("QCGPJ_FSC_FORK") != NULL;
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        int eof = 0;
        for (int k = 0; k < n; k++) {
            run *r = evs[k].data.ptr;
            if (r == &out_tag) continue; /* written below */
            if (r && r->pend >= 0) {
                int err = 0;
                ssize_t g = read(r->pend, &err, sizeof err);
                epoll_ctl(ep, EPOLL_CTL_DEL, r->pend, NULL);
                close(r->pend);
                r->pend = -1;
                if (g > 0) {
                    while (waitpid(r->pid, NULL, 0) < 0 && errno == EINTR) {}
                    if (r->prev) r->prev->next = r->next; else runs = r->next;
                    if (r->next) r->next->prev = r->prev;
                    buf w = {0}; cat(&w, "cannot start: ", strerror(err), NULL);
                    event("failed", r->rid, &w, 0); free(w.p); free(r);
                    continue;
                }
                r->pidfd = (int)syscall(SYS_pidfd_open, r->pid, 0);
                struct epoll_event e2 = {.events = EPOLLIN, .data.ptr = r};
                epoll_ctl(ep, EPOLL_CTL_ADD, r->pidfd, &e2);
                event("started", r->rid, NULL, r->pid);
                continue;
            }
            if (r) { reap(r); continue; }
            if (have == cap) { cap *= 2; in = xrealloc(in, cap); }
            ssize_t got = read(rfd, in + have, cap - have);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) { eof = 1; break; }
            have += (size_t)got;
            size_t pos = 0;
            while (have - pos >= 4) {
                size_t len = (size_t)(uint32_t)le32(in + pos);
                if (have - pos - 4 < len) {
                    if (len + 4 > cap) { cap = len + 4; in = xrealloc(in, cap); }
                    break;
                }
                ps.p = in + pos + 4;
                ps.end = ps.p + len;
                ps.nrefs = 0;
                ps.bad = 0;
                val *msg = rd(&ps, 0);
                if (!ps.bad) handle(msg);
                arena_reset();
                pos += 4 + len;
            }
            memmove(in, in + pos, have - pos);
            have -= pos;
        }
        if (eof) break;
        if (flush_out(wfd) < 0) break; /* the pilot is gone */
        if ((out.len > 0) != writing) { /* wait for room only while there is output */
            writing = out.len > 0;
            struct epoll_event w = {.events = EPOLLOUT, .data.ptr = &out_tag};
            epoll_ctl(ep, writing ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, wfd, &w);
        }
    }
    stop_all();
    if (getenv("QCGPJ_FSC_TIMES")) {
        struct rusage ru; getrusage(RUSAGE_SELF, &ru);
        FILE *f = fopen(getenv("QCGPJ_FSC_TIMES"), "a");
        fprintf(f, "%ld.%06ld %ld.%06ld\n", ru.ru_utime.tv_sec, ru.ru_utime.tv_usec, ru.ru_stime.tv_sec, ru.ru_stime.tv_usec);
        fclose(f);
    }
    return 0;
}
