/*
 * pam_jit.so: jitaccess's PAM module (pam_jit(8)), account and session.
 *
 *     account  required  pam_jit.so
 *     session  optional  pam_jit.so
 *
 * A thin client of jit-hostd, as SSSD's pam_sss is of sssd: one bounded request per
 * phase (pam.account, pam.open_session, pam.close_session) through jit_conn.c (shared
 * with the sudo plugin), the user from PAM_USER, and every outcome turned into a PAM
 * code in one table (CODES). hostd finds the login session itself, from this process's
 * pid (SO_PEERCRED) and logind. No policy lives here.
 *
 * When hostd cannot answer, account applies the gate file hostd writes whenever it
 * loads the policy (/var/lib/jit/login-gate.json): gated users are refused, everyone
 * else follows [login] when_unreachable. Root is never refused; the module does nothing
 * under the jit-sudo service (hostd's own PAM use). Arguments: socket=PATH, gate=PATH
 * (absolute; for tests), debug.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <syslog.h>
#include <unistd.h>

#include <json-c/json.h>

#define PAM_SM_AUTH
#define PAM_SM_ACCOUNT
#define PAM_SM_SESSION
#define PAM_SM_PASSWORD
#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <security/pam_modutil.h>

#include "../sudo-plugin/jit_conn.h"

#define JIT_GATE "/var/lib/jit/login-gate.json"
#define TIMEOUT_MS 3000 /* the whole request: a wedged hostd must not hang a login */
#define GATE_MAX 65536
#define INERT_SERVICE "jit-sudo"
#define TERMINAL_SOCKET "terminal.sock" /* next to hostd.sock: hostd/server/ttys.py */
#define KEPT "pam_jit_conn" /* pam_set_data: account's connection, for open_session */
#define EXPORT __attribute__((visibility("default")))

/* The outcomes, and the one table that makes them PAM return values. */
enum outcome { OK, INERT, REFUSED, UNREACHABLE_REFUSED, NO_USER, SESSION_FAILED, ERROR };
static const int CODES[] = {
    [OK] = PAM_SUCCESS,
    [INERT] = PAM_IGNORE,                   /* not ours to judge (jit-sudo, root's sessions) */
    [REFUSED] = PAM_PERM_DENIED,            /* gated without a login grant, or deny */
    [UNREACHABLE_REFUSED] = PAM_AUTHINFO_UNAVAIL, /* gated, hostd cannot say otherwise */
    [NO_USER] = PAM_USER_UNKNOWN,
    [SESSION_FAILED] = PAM_SESSION_ERR,
    [ERROR] = PAM_SERVICE_ERR,              /* a bad answer or out of memory: fail closed */
};
static const char *const NAMES[] = {
    [OK] = "ok", [INERT] = "inert", [REFUSED] = "refused",
    [UNREACHABLE_REFUSED] = "unreachable_refused", [NO_USER] = "no_user",
    [SESSION_FAILED] = "session_failed", [ERROR] = "error",
};
/* hostd's codes that mean it cannot decide now: account falls back to the gate file */
static const char *const UNREACHABLE[] = { "unreachable", "timeout", "busy", "config_error",
                                           "internal", NULL };

struct opts {
    const char *socket, *gate;
    int debug;
};

/* The [login] rules of the gate file: REQUIRE borrowed from RULES. */
struct gate {
    struct json_object *rules, *require;
    int deny;
};

static void parse_args(pam_handle_t *pamh, int argc, const char **argv, struct opts *o)
{
    o->socket = JIT_SOCKET;
    o->gate = JIT_GATE;
    o->debug = 0;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "socket=/", 8) == 0)
            o->socket = argv[i] + 7;
        else if (strncmp(argv[i], "gate=/", 6) == 0)
            o->gate = argv[i] + 5;
        else if (strcmp(argv[i], "debug") == 0)
            o->debug = 1;
        else
            pam_syslog(pamh, LOG_ERR, "unknown option ignored: %.64s", argv[i]);
    }
}

/* Logging copies of user-given text: printable ASCII only, at most 64 bytes. */
static const char *clean(const char *s, char out[static 65])
{
    size_t i = 0;

    for (; s != NULL && s[i] != '\0' && i < 64; i++)
        out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    out[i] = '\0';
    return out;
}

static const char *item(pam_handle_t *pamh, int type)
{
    const void *value = NULL;

    if (pam_get_item(pamh, type, &value) != PAM_SUCCESS || value == NULL ||
        *(const char *)value == '\0')
        return NULL;
    return value;
}

/* Shows hostd's words (already escaped by hostd) through the application's conversation;
 * a missing conversation function never fails the login. */
static void say(pam_handle_t *pamh, int flags, const char *text, int error)
{
    if (text == NULL || *text == '\0' || ((flags & PAM_SILENT) && !error))
        return;
    if (error)
        pam_error(pamh, "%s", text);
    else
        pam_info(pamh, "%s", text);
}

/* The request of OP for USER: what the application told PAM, passed unchanged. */
static struct json_object *new_request(pam_handle_t *pamh, const char *op, const char *user)
{
    struct json_object *req = json_object_new_object();
    const char *service = item(pamh, PAM_SERVICE), *tty = item(pamh, PAM_TTY);
    const char *rhost = item(pamh, PAM_RHOST);

    if (req == NULL || jit_put(req, "v", json_object_new_int(1)) != 0 ||
        jit_put(req, "op", json_object_new_string(op)) != 0 ||
        jit_put(req, "user", json_object_new_string(user)) != 0 ||
        jit_put(req, "service", json_object_new_string(service ? service : "")) != 0 ||
        (tty != NULL && jit_put(req, "tty", json_object_new_string(tty)) != 0) ||
        (rhost != NULL && jit_put(req, "rhost", json_object_new_string(rhost)) != 0)) {
        json_object_put(req);
        return NULL;
    }
    return req;
}

/* A connection account keeps for open_session: hostd answers requests in turn on one
 * connection, and a login (login, su, sshd's monitor) opens its session in the process
 * that passed account, moments later. Reused only by that process (hostd registers the
 * session by the connection's SO_PEERCRED pid) and only while hostd has not closed it
 * (its idle timeout); anything else opens a new one. */
struct kept {
    struct jit_conn conn; /* first: a struct jit_conn * of ask_at is a struct kept * */
    pid_t pid;
    int taken; /* by take_kept, which closes and frees it: the cleanup leaves it */
};

static void drop_kept(pam_handle_t *pamh, void *data, int error_status)
{
    struct kept *k = data;

    (void)pamh;
    (void)error_status;
    if (k == NULL || k->taken)
        return;
    jit_conn_close(&k->conn);
    free(k);
}

/* Account's connection if this process may reuse it (hostd has not closed it): taken
 * out of the handle either way, so it is used once. NULL otherwise. */
static struct jit_conn *take_kept(pam_handle_t *pamh)
{
    const void *data = NULL;
    struct kept *k;
    struct pollfd p;

    if (pam_get_data(pamh, KEPT, &data) != PAM_SUCCESS || data == NULL)
        return NULL;
    k = (struct kept *)data;
    p = (struct pollfd){ .fd = k->conn.fd, .events = POLLIN };
    if (k->pid != getpid() || k->conn.fd < 0 || poll(&p, 1, 0) != 0) {
        pam_set_data(pamh, KEPT, NULL, NULL); /* the cleanup closes and frees it */
        return NULL;
    }
    k->taken = 1; /* out of the handle: the caller (ask_at) closes and frees it */
    pam_set_data(pamh, KEPT, NULL, NULL);
    return &k->conn;
}

static void keep(pam_handle_t *pamh, struct jit_conn *c)
{
    struct kept *k = (struct kept *)c; /* conn is the first member: allocated as kept */

    k->pid = getpid();
    k->taken = 0;
    if (pam_set_data(pamh, KEPT, k, drop_kept) != PAM_SUCCESS) {
        jit_conn_close(c);
        free(k);
    }
}

/* One request to the socket at PATH (with descriptor PASS_FD unless -1), one answer,
 * within TIMEOUT_MS in all; NULL (logged) when hostd did not answer usably:
 * unreachable, timed out, or a malformed answer. REUSE: account's connection (taken
 * with take_kept), tried first; a new one if hostd closed it before any answer. With
 * KEEP the connection stays open in *KEEP when the answer came, else it is closed. */
static struct json_object *ask_at(pam_handle_t *pamh, const char *path, const char *op,
                                  const char *user, int pass_fd, struct jit_conn *reuse,
                                  struct jit_conn **keep_out)
{
    struct jit_conn *c = reuse != NULL ? reuse : malloc(sizeof(struct kept));
    struct json_object *req = new_request(pamh, op, user), *ans = NULL;
    long long deadline = jit_deadline_in(TIMEOUT_MS);
    const char *why = "out of memory";
    char u[65];

    if (c != NULL && reuse == NULL) {
        c->fd = -1;
        ((struct kept *)c)->pid = -1;
        ((struct kept *)c)->taken = 0;
    }
    if (c != NULL && req != NULL && reuse != NULL &&
        jit_conn_send(c, req, deadline, pass_fd, &why) == 0)
        ans = jit_conn_read(c, deadline, 0, &why);
    if (c != NULL && req != NULL && ans == NULL &&
        (reuse == NULL || strcmp(why, "connection closed") == 0)) {
        /* a new connection, or hostd had closed the kept one (idle) before answering */
        jit_conn_close(c);
        if (jit_conn_open(c, path, TIMEOUT_MS, &why) == 0 &&
            jit_conn_send(c, req, deadline, pass_fd, &why) == 0)
            ans = jit_conn_read(c, deadline, 0, &why);
    }
    if (ans == NULL)
        pam_syslog(pamh, LOG_ERR, "%s for %s: cannot reach jit-hostd: %s", op,
                   clean(user, u), why);
    if (keep_out != NULL && ans != NULL) {
        *keep_out = c; /* allocated as a struct kept */
    } else if (c != NULL) {
        jit_conn_close(c);
        free(c);
    }
    json_object_put(req);
    return ans;
}

/* The session's terminal (PAM_TTY, under /dev), opened for writing without becoming
 * our controlling terminal: only a character device that is a tty. -1 if none. */
static int open_terminal(pam_handle_t *pamh)
{
    const char *tty = item(pamh, PAM_TTY);
    char path[128];
    struct stat sb;
    int fd, n;

    if (tty == NULL || strstr(tty, "..") != NULL)
        return -1;
    n = snprintf(path, sizeof(path), "%s%s", tty[0] == '/' ? "" : "/dev/", tty);
    if (n < 0 || (size_t)n >= sizeof(path) || strncmp(path, "/dev/", 5) != 0)
        return -1;
    fd = open(path, O_WRONLY | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0 && (fstat(fd, &sb) != 0 || !S_ISCHR(sb.st_mode) || !isatty(fd))) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/*
 * Hands the session's terminal to hostd (pam.terminal on terminal.sock, next to the
 * socket, the descriptor passed with SCM_RIGHTS): hostd writes its notices there for
 * the session's life, whatever `mesg` says, and without opening the device itself.
 * A failure costs the notices only, never the session.
 */
static void hand_over_terminal(pam_handle_t *pamh, const struct opts *o, const char *user)
{
    const char *slash = strrchr(o->socket, '/'); /* o->socket is absolute */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)], u[65];
    int fd = -1, n = snprintf(path, sizeof(path), "%.*s/" TERMINAL_SOCKET,
                              (int)(slash - o->socket), o->socket);
    struct json_object *ans;

    if (n < 0 || (size_t)n >= sizeof(path) || (fd = open_terminal(pamh)) < 0) {
        if (o->debug)
            pam_syslog(pamh, LOG_DEBUG, "no terminal to hand over (PAM_TTY %s)",
                       clean(item(pamh, PAM_TTY), u));
        return;
    }
    if ((ans = ask_at(pamh, path, "pam.terminal", user, fd, NULL, NULL)) != NULL &&
        !jit_answer_ok(ans))
        pam_syslog(pamh, LOG_ERR, "jit-hostd did not take the terminal of %s: %s",
                   clean(user, u), jit_get_str(ans, "code"));
    json_object_put(ans);
    close(fd);
}

/* The gate file's rules in *G: 1, or 0 (G->rules NULL) when missing or not to be
 * trusted (not a regular file owned by root and writable by root alone, or malformed):
 * then nobody counts as gated. */
static int read_gate(const char *path, struct gate *g)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    char *buf = malloc(GATE_MAX + 1);
    struct json_tokener *tok = json_tokener_new();
    struct json_object *v, *wu;
    size_t len = 0, n_items;
    struct stat sb;
    ssize_t n = 1;
    int ok = 0;

    g->rules = g->require = NULL;
    if (fd < 0 || buf == NULL || tok == NULL || fstat(fd, &sb) != 0 || sb.st_uid != 0 ||
        (sb.st_mode & 022) || !S_ISREG(sb.st_mode))
        goto done;
    while (len <= GATE_MAX && (n = read(fd, buf + len, GATE_MAX + 1 - len)) != 0) {
        if (n < 0 && errno != EINTR)
            goto done;
        len += n > 0 ? (size_t)n : 0;
    }
    if (len > GATE_MAX)
        goto done;
    while (len > 0 && buf[len - 1] != '\0' && strchr(" \t\r\n", buf[len - 1]) != NULL)
        len--;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    g->rules = json_tokener_parse_ex(tok, buf, (int)len);
    if (g->rules == NULL || json_tokener_get_parse_end(tok) != len ||
        !json_object_is_type(g->rules, json_type_object) ||
        !json_object_object_get_ex(g->rules, "v", &v) || !json_object_is_type(v, json_type_int) ||
        json_object_get_int64(v) != 1 ||
        !json_object_object_get_ex(g->rules, "require_grant", &g->require) ||
        !json_object_is_type(g->require, json_type_array))
        goto done;
    n_items = json_object_array_length(g->require);
    for (size_t i = 0; i < n_items; i++) {
        if (jit_str_of(json_object_array_get_idx(g->require, i)) == NULL)
            goto done;
    }
    wu = json_object_object_get(g->rules, "when_unreachable");
    g->deny = jit_str_of(wu) != NULL && strcmp(jit_str_of(wu), "deny") == 0;
    ok = 1;
done:
    if (!ok) {
        json_object_put(g->rules);
        g->rules = g->require = NULL;
    }
    json_tokener_free(tok);
    free(buf);
    if (fd >= 0)
        close(fd);
    return ok;
}

/* USER named in REQUIRE, or a member of a %group there (listed, or by primary group),
 * as hostd/policy/logins.py decides; never root. */
static int is_gated(pam_handle_t *pamh, struct json_object *require, const char *user)
{
    struct passwd *pw = pam_modutil_getpwnam(pamh, user);
    size_t n = json_object_array_length(require);

    if (strcmp(user, "root") == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        const char *member = jit_str_of(json_object_array_get_idx(require, i));
        struct group *gr;

        if (strcmp(member, user) == 0)
            return 1;
        if (member[0] != '%' || (gr = pam_modutil_getgrnam(pamh, member + 1)) == NULL)
            continue;
        if (pw != NULL && gr->gr_gid == pw->pw_gid)
            return 1;
        for (char **m = gr->gr_mem; m != NULL && *m != NULL; m++) {
            if (strcmp(*m, user) == 0)
                return 1;
        }
    }
    return 0;
}

static int unreachable_code(const char *code)
{
    for (const char *const *u = UNREACHABLE; *u != NULL; u++) {
        if (strcmp(code, *u) == 0)
            return 1;
    }
    return 0;
}

/* hostd cannot decide: the gate file's rules. */
static enum outcome fall_back(pam_handle_t *pamh, int flags, const struct gate *g,
                              const char *user)
{
    struct utsname un;
    char text[512];

    if (uname(&un) != 0)
        strcpy(un.nodename, "this host");
    if (g->rules != NULL && is_gated(pamh, g->require, user)) {
        snprintf(text, sizeof(text), "jit: logging in to %s requires an active grant, and "
                 "jit-hostd cannot be reached to check one: try again later", un.nodename);
        say(pamh, flags, text, 1);
        return UNREACHABLE_REFUSED;
    }
    if (g->rules != NULL && g->deny) {
        snprintf(text, sizeof(text), "jit: jit-hostd cannot be reached and %s admits no "
                 "logins without it: try again later", un.nodename);
        say(pamh, flags, text, 1);
        return REFUSED;
    }
    return OK;
}

static enum outcome account(pam_handle_t *pamh, int flags, const struct opts *o,
                            const char *user)
{
    struct json_object *ans = NULL;
    struct jit_conn *kept = NULL;
    struct gate g;
    enum outcome out = OK;
    const char *code = "unreachable";

    if (strcmp(user, "root") == 0)
        return OK; /* never refused: a broken hostd or policy must not lock root out */
    read_gate(o->gate, &g);
    if (g.rules != NULL && json_object_array_length(g.require) == 0)
        goto done; /* nobody is gated: no round trip */
    ans = ask_at(pamh, o->socket, "pam.account", user, -1, NULL, &kept);
    if (kept != NULL && ans != NULL && jit_answer_ok(ans))
        keep(pamh, kept); /* for open_session (take_kept) */
    else if (kept != NULL)
        drop_kept(pamh, kept, 0);
    if (ans != NULL && jit_answer_ok(ans))
        goto done;
    if (ans != NULL)
        code = jit_get_str(ans, "code");
    if (strcmp(code, "no_grant") == 0) {
        say(pamh, flags, jit_get_str(ans, "message"), 1);
        out = REFUSED;
    } else if (strcmp(code, "not_found") == 0) {
        out = NO_USER;
    } else if (!unreachable_code(code)) {
        out = ERROR;
    } else {
        out = fall_back(pamh, flags, &g, user);
    }
done:
    json_object_put(ans);
    json_object_put(g.rules);
    return out;
}

static enum outcome session(pam_handle_t *pamh, int flags, const struct opts *o,
                            const char *user, const char *op)
{
    struct json_object *ans;
    enum outcome out;

    if (strcmp(user, "root") == 0)
        return INERT;
    ans = ask_at(pamh, o->socket, op, user, -1,
                 strcmp(op, "pam.open_session") == 0 ? take_kept(pamh) : NULL, NULL);
    if (ans == NULL)
        return SESSION_FAILED;
    if (jit_answer_ok(ans)) {
        say(pamh, flags, jit_get_str(ans, "message"), 0);
        if (strcmp(op, "pam.open_session") == 0)
            hand_over_terminal(pamh, o, user);
        out = OK;
    } else {
        out = strcmp(jit_get_str(ans, "code"), "not_found") == 0 ? NO_USER : SESSION_FAILED;
    }
    json_object_put(ans);
    return out;
}

/* One entry for every phase: the checks they share, the outcome logged, the PAM code. */
static int run(pam_handle_t *pamh, int flags, int argc, const char **argv, const char *op)
{
    const char *service = item(pamh, PAM_SERVICE), *user = item(pamh, PAM_USER);
    enum outcome out;
    struct opts o;
    char u[65], s[65];

    parse_args(pamh, argc, argv, &o);
    if (service != NULL && strcmp(service, INERT_SERVICE) == 0)
        out = INERT;
    else if (user == NULL)
        out = NO_USER;
    else if (strcmp(op, "pam.account") == 0)
        out = account(pamh, flags, &o, user);
    else
        out = session(pamh, flags, &o, user, op);
    if (out == REFUSED || out == UNREACHABLE_REFUSED || out == ERROR || out == NO_USER)
        pam_syslog(pamh, out == ERROR ? LOG_ERR : LOG_NOTICE, "%s of %s (%s): %s", op,
                   clean(user, u), clean(service, s), NAMES[out]);
    else if (o.debug)
        pam_syslog(pamh, LOG_DEBUG, "%s of %s (%s): %s", op, clean(user, u),
                   clean(service, s), NAMES[out]);
    return CODES[out];
}

EXPORT int pam_sm_acct_mgmt(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    return run(pamh, flags, argc, argv, "pam.account");
}

EXPORT int pam_sm_open_session(pam_handle_t *pamh, int flags, int argc,
                                   const char **argv)
{
    return run(pamh, flags, argc, argv, "pam.open_session");
}

EXPORT int pam_sm_close_session(pam_handle_t *pamh, int flags, int argc,
                                    const char **argv)
{
    return run(pamh, flags, argc, argv, "pam.close_session");
}

/* auth, setcred, password: a stack line there is harmless. */
EXPORT int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc,
                                   const char **argv)
{
    (void)pamh, (void)flags, (void)argc, (void)argv;
    return PAM_IGNORE;
}

EXPORT int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    (void)pamh, (void)flags, (void)argc, (void)argv;
    return PAM_IGNORE;
}

EXPORT int pam_sm_chauthtok(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    (void)pamh, (void)flags, (void)argc, (void)argv;
    return PAM_IGNORE;
}
