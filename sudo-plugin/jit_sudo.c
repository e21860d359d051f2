/*
 * jit_sudo.so: sudo policy plugin (sudo_plugin(5), API 1.x) for jitaccess.
 *
 * A thin shim: it passes what sudo knows to jit-hostd over /run/jit/hostd.sock
 * (docs/PROTOCOL.md, DESIGN.md sections 6 and 13) and returns what hostd answers.
 * No policy lives here; anything unexpected refuses (fail closed).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sudo_plugin.h>

#define JIT_SOCKET "/run/jit/hostd.sock"
#ifndef JIT_VERSION
#define JIT_VERSION "unknown"
#endif
#define LINE_MAX_BYTES 65536 /* one line, newline included */
#define CONNECT_TIMEOUT_S 2
#define ANSWER_TIMEOUT_MS 10000
#define PASSWORD_TRIES 3
#define WAIT_MAX_S 86400
#define UNREACHABLE "jit: cannot reach the access daemon (%s)"

/* State the API forces on us: what open() received and what must outlive a call. */
static struct {
    unsigned int version;
    sudo_conv_t conv;
    sudo_printf_t printf;
    char * const *settings, * const *user_info, * const *user_env;
    char **command_info, **argv_out, **env_out; /* kept until sudo exits: see close() */
    /* intercept=true: sudo asks again for every program the command starts, and may
     * still use the first answer's vectors; later answers go in slot 1, replaced. */
    char **i_command_info, **i_argv_out, **i_env_out;
    int checked; /* a first check_policy allowed: later ones are intercepted */
    char errbuf[1024];                           /* *errstr: valid until close() */
} st;

struct conn {
    int fd;
    char buf[LINE_MAX_BYTES + 1];
};

/* Shows TEXT and a newline through the conversation function. */
static void say(int type, const char *text)
{
    struct sudo_conv_message msgs[2] = { { .msg_type = type, .msg = text },
                                         { .msg_type = type, .msg = "\n" } };
    struct sudo_conv_reply replies[2] = { { NULL }, { NULL } };

    st.conv(2, msgs, replies, NULL);
}

/* Shows a refusal as an error and keeps it for *errstr (which exists since API 1.15). */
static void refuse(const char **errstr, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(st.errbuf, sizeof(st.errbuf), fmt, ap);
    va_end(ap);
    say(SUDO_CONV_ERROR_MSG, st.errbuf);
    if (errstr != NULL && st.version >= SUDO_API_MKVERSION(1, 15))
        *errstr = st.errbuf;
}

/*
 * Waits for EVENTS on FD until DEADLINE (CLOCK_MONOTONIC ms): 1 ready, 0 timed out,
 * -1 interrupted by a signal when INTERRUPTIBLE (sudo catches SIGINT and friends with
 * a handler that only records them, so Ctrl-C reaches us as EINTR, nothing more).
 */
static int wait_fd(int fd, short events, long long deadline, int interruptible)
{
    struct pollfd pfd = { .fd = fd, .events = events };
    struct timespec ts;
    long long left;
    int n;

    do {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        left = deadline - ((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
        n = left <= 0 ? 0 : poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
        if (n < 0 && errno == EINTR && interruptible)
            return -1;
    } while ((n < 0 && errno == EINTR) || (n == 0 && left > 60000));
    return n > 0;
}

static long long deadline_in(long long ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + ms;
}

/* Connects to hostd: the file must be a socket owned by root, the peer must be root. */
static int conn_open(struct conn *c, const char **why)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX, .sun_path = JIT_SOCKET };
    struct timeval tv = { .tv_sec = CONNECT_TIMEOUT_S };
    struct ucred cred;
    socklen_t credlen = sizeof(cred);
    struct stat sb;
    int rc;

    if (lstat(JIT_SOCKET, &sb) != 0)
        return *why = "no socket " JIT_SOCKET, -1;
    if (!S_ISSOCK(sb.st_mode) || sb.st_uid != 0)
        return *why = JIT_SOCKET " is not a socket owned by root", -1;
    if ((c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        return *why = "no socket available", -1;
    /* A blocking AF_UNIX connect waits for room in hostd's backlog, bounded by SO_SNDTIMEO
     * (non-blocking it fails at once with EAGAIN, and there is nothing to poll for). */
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    do
        rc = connect(c->fd, (struct sockaddr *)&sun, sizeof(sun));
    while (rc != 0 && errno == EINTR);
    if (rc != 0)
        return *why = errno == EAGAIN ? "connect timed out" : "connection refused", -1;
    if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) != 0 || cred.uid != 0)
        return *why = "the daemon is not running as root", -1;
    return 0;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* Sends REQ as one line, then wipes the serialized text (it may hold a password). */
static int send_request(struct conn *c, struct json_object *req, const char **why)
{
    size_t len = 0, done = 0;
    const char *text = json_object_to_json_string_length(
        req, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    const char *err = text == NULL ? "out of memory" : NULL;
    long long deadline = deadline_in(ANSWER_TIMEOUT_MS);
    ssize_t n;

    if (text != NULL && len + 1 > LINE_MAX_BYTES)
        err = "request over 64 KiB";
    while (err == NULL && done < len + 1) {
        n = done < len ? send(c->fd, text + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT)
                       : send(c->fd, "\n", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0)
            done += (size_t)n;
        else if (errno != EINTR && errno != EAGAIN)
            err = "connection closed";
        else if (errno == EAGAIN && wait_fd(c->fd, POLLOUT, deadline, 0) != 1)
            err = "timed out";
    }
    if (text != NULL)
        explicit_bzero((char *)text, len);
    if (err != NULL)
        *why = err;
    return err == NULL ? 0 : -1;
}

/* The string J if it is one and holds no NUL, else NULL. */
static const char *str_of(struct json_object *j)
{
    const char *s = json_object_get_string(j);

    if (!json_object_is_type(j, json_type_string) ||
        strlen(s) != (size_t)json_object_get_string_len(j))
        return NULL;
    return s;
}

static const char *get_str(struct json_object *obj, const char *key)
{
    return str_of(json_object_object_get(obj, key));
}

/*
 * Reads one answer line within TIMEOUT_MS: a JSON object with bool "ok" and string
 * "code". hostd answers once per request, so nothing may follow the newline. A wait
 * for approval (INTERRUPTIBLE) ends at a signal with *why "cancelled".
 */
static struct json_object *read_answer(struct conn *c, long long timeout_ms, int interruptible,
                                       const char **why)
{
    long long deadline = deadline_in(timeout_ms);
    struct json_tokener *tok;
    struct json_object *ans = NULL;
    size_t len = 0;
    ssize_t n;
    char *nl;

    while ((nl = memchr(c->buf, '\n', len)) == NULL) {
        if (len == LINE_MAX_BYTES)
            return *why = "answer over 64 KiB", NULL;
        n = recv(c->fd, c->buf + len, LINE_MAX_BYTES - len, MSG_DONTWAIT);
        if (n > 0)
            len += (size_t)n;
        else if (n == 0)
            return *why = "connection closed", NULL;
        else if (errno != EINTR && errno != EAGAIN)
            return *why = "read failed", NULL;
        else if (errno == EAGAIN && (n = wait_fd(c->fd, POLLIN, deadline, interruptible)) != 1)
            return *why = n < 0 ? "cancelled" : "timed out", NULL;
    }
    *why = "malformed answer";
    if (nl != c->buf + len - 1 || (tok = json_tokener_new()) == NULL)
        return NULL;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    ans = json_tokener_parse_ex(tok, c->buf, (int)(nl - c->buf));
    if (ans == NULL || json_tokener_get_parse_end(tok) != (size_t)(nl - c->buf) ||
        !json_object_is_type(ans, json_type_object) ||
        !json_object_is_type(json_object_object_get(ans, "ok"), json_type_boolean) ||
        get_str(ans, "code") == NULL) {
        json_object_put(ans);
        ans = NULL;
    }
    json_tokener_free(tok);
    return ans;
}

static int answer_ok(struct json_object *ans)
{
    return json_object_get_boolean(json_object_object_get(ans, "ok"));
}

static int is_decision(struct json_object *ans, const char *decision)
{
    const char *d = get_str(ans, "decision");

    return answer_ok(ans) && d != NULL && strcmp(d, decision) == 0;
}

/* Adds VAL (taking it) to object OBJ at KEY, or to array OBJ if KEY is NULL. */
static int put(struct json_object *obj, const char *key, struct json_object *val)
{
    int rc = -1;

    if (val != NULL)
        rc = key ? json_object_object_add(obj, key, val) : json_object_array_add(obj, val);
    if (rc != 0)
        json_object_put(val);
    return rc;
}

/* Adds VEC (N strings, or up to its NULL if N < 0) to REQ at KEY. */
static int add_vector(struct json_object *req, const char *key, char * const *vec, int n)
{
    struct json_object *arr = json_object_new_array();

    if (put(req, key, arr) != 0)
        return -1;
    for (int i = 0; vec != NULL && (n < 0 || i < n) && vec[i] != NULL; i++) {
        if (put(arr, NULL, json_object_new_string(vec[i])) != 0)
            return -1;
    }
    return 0;
}

static void free_vector(char **vec)
{
    for (size_t i = 0; vec != NULL && vec[i] != NULL; i++)
        free(vec[i]);
    free(vec);
}

/* A NULL-terminated copy of the array of strings at KEY; NULL if malformed. */
static char **copy_vector(struct json_object *ans, const char *key)
{
    struct json_object *arr = json_object_object_get(ans, key);
    size_t n = json_object_is_type(arr, json_type_array) ? json_object_array_length(arr) : 0;
    char **vec = json_object_is_type(arr, json_type_array) ? calloc(n + 1, sizeof(char *))
                                                            : NULL;

    for (size_t i = 0; vec != NULL && i < n; i++) {
        const char *s = str_of(json_object_array_get_idx(arr, i));

        if (s == NULL || (vec[i] = strdup(s)) == NULL) {
            free_vector(vec);
            return NULL;
        }
    }
    return vec;
}

/* A sudo.check request: what sudo told us, passed unchanged. */
static struct json_object *new_check(const char *mode, char * const argv[], int argc,
                                     const char **errstr)
{
    struct json_object *req = json_object_new_object();

    if (req == NULL || put(req, "v", json_object_new_int(1)) != 0 ||
        put(req, "op", json_object_new_string("sudo.check")) != 0 ||
        put(req, "mode", json_object_new_string(mode)) != 0 ||
        add_vector(req, "settings", st.settings, -1) != 0 ||
        add_vector(req, "user_info", st.user_info, -1) != 0 ||
        add_vector(req, "argv", argv, argc) != 0 ||
        add_vector(req, "env", st.user_env, -1) != 0) {
        json_object_put(req);
        refuse(errstr, "jit: out of memory");
        return NULL;
    }
    return req;
}

/* Asks for a password with PROMPT and adds it to REQ; the reply is wiped and freed. */
static int add_password(struct json_object *req, const char *prompt)
{
    struct sudo_conv_message msg = { .msg_type = SUDO_CONV_PROMPT_ECHO_OFF, .msg = prompt };
    struct sudo_conv_reply repl = { NULL };
    int rc = -1;

    if (st.conv(1, &msg, &repl, NULL) == 0 && repl.reply != NULL)
        rc = put(req, "password", json_object_new_string(repl.reply));
    if (repl.reply != NULL) {
        explicit_bzero(repl.reply, strlen(repl.reply));
        free(repl.reply);
    }
    return rc;
}

static void drop_password(struct json_object *req)
{
    struct json_object *pw;

    if (json_object_object_get_ex(req, "password", &pw)) {
        explicit_bzero((char *)json_object_get_string(pw), (size_t)json_object_get_string_len(pw));
        json_object_object_del(req, "password");
    }
}

/* Shows PENDING's text, sends sudo.wait on C and returns the final answer (NULL: *why). */
static struct json_object *await_approval(struct conn *c, struct json_object *pending,
                                          const char **why)
{
    struct json_object *wait = json_object_new_object(), *tmo, *ans = NULL;
    const char *id = get_str(pending, "request_id"), *text = get_str(pending, "message");
    int64_t timeout = -1;

    if (json_object_object_get_ex(pending, "timeout", &tmo) &&
        json_object_is_type(tmo, json_type_int))
        timeout = json_object_get_int64(tmo);
    *why = "malformed answer";
    if (id != NULL && text != NULL && timeout >= 0 && timeout <= WAIT_MAX_S) {
        *why = "out of memory";
        if (wait != NULL && put(wait, "v", json_object_new_int(1)) == 0 &&
            put(wait, "op", json_object_new_string("sudo.wait")) == 0 &&
            put(wait, "id", json_object_new_string(id)) == 0) {
            say(SUDO_CONV_ERROR_MSG, text);
            if (send_request(c, wait, why) == 0)
                ans = read_answer(c, (timeout + 5) * 1000, 1, why);
        }
    }
    json_object_put(wait);
    json_object_put(pending);
    return ans;
}

/*
 * Sends REQ and follows hostd through password prompts and an approval wait.
 * 1: an ok answer (with decision WANT unless NULL) in *ansp, for the caller to free;
 * 0: refused; -1: hostd unreachable or its answer unusable. 0 and -1 are shown and
 * set *errstr.
 */
static int ask(struct json_object *req, const char *want, struct json_object **ansp,
               const char **errstr)
{
    struct conn *c = malloc(sizeof(*c));
    struct json_object *ans = NULL;
    const char *why = "out of memory";
    int ret = -1, tries = 0;

    if (c == NULL)
        goto done;
    c->fd = -1;
    for (;;) {
        if (conn_open(c, &why) != 0 || send_request(c, req, &why) != 0)
            goto done;
        drop_password(req);
        if ((ans = read_answer(c, ANSWER_TIMEOUT_MS, 0, &why)) == NULL)
            goto done;
        if (answer_ok(ans) || strcmp(get_str(ans, "code"), "auth_required") != 0 ||
            tries++ == PASSWORD_TRIES)
            break;
        conn_close(c); /* hostd drops a connection idle for 10 s: ask again on a new one */
        why = "malformed answer";
        if (get_str(ans, "message") == NULL)
            goto done;
        if (add_password(req, get_str(ans, "message")) != 0) {
            refuse(errstr, "jit: no password given");
            ret = 0;
            goto done;
        }
        json_object_put(ans);
        ans = NULL;
    }
    if (is_decision(ans, "pending") && (ans = await_approval(c, ans, &why)) == NULL) {
        if (strcmp(why, "cancelled") == 0) { /* closing the connection withdraws it */
            refuse(errstr, "jit: cancelled");
            ret = 0;
        }
        goto done;
    }
    why = answer_ok(ans) ? "unexpected answer" : "malformed answer";
    if (!answer_ok(ans) && get_str(ans, "message") != NULL) {
        refuse(errstr, "%s", get_str(ans, "message"));
        ret = 0;
    } else if (answer_ok(ans) && (want == NULL || is_decision(ans, want))) {
        *ansp = ans;
        ans = NULL;
        ret = 1;
    }
done:
    if (ret == -1)
        refuse(errstr, UNREACHABLE, why);
    drop_password(req);
    json_object_put(ans);
    if (c != NULL)
        conn_close(c);
    free(c);
    return ret;
}

static int jit_open(unsigned int version, sudo_conv_t conversation,
                    sudo_printf_t sudo_plugin_printf, char * const settings[],
                    char * const user_info[], char * const user_env[],
                    char * const plugin_options[], const char **errstr)
{
    (void)plugin_options;
    st.version = version;
    st.conv = conversation;
    st.printf = sudo_plugin_printf;
    st.settings = settings;
    st.user_info = user_info;
    st.user_env = user_env;
    if (SUDO_API_VERSION_GET_MAJOR(version) != SUDO_API_VERSION_MAJOR) {
        refuse(errstr, "jit: incompatible sudo plugin API major version %u, expected %d",
               SUDO_API_VERSION_GET_MAJOR(version), SUDO_API_VERSION_MAJOR);
        return -1;
    }
    return 1;
}

/*
 * The vectors of our answers stay allocated until sudo exits: sudo calls close() from
 * run_command(), and sudoedit then still copies the edited files back to the paths in
 * our argv (measured: freeing them here made sudoedit write to a freed path).
 */
static void jit_close(int exit_status, int error)
{
    (void)exit_status;
    (void)error;
}

static int jit_show_version(int verbose)
{
    (void)verbose;
    st.printf(SUDO_CONV_INFO_MSG, "jit_sudo policy plugin version %s\n", JIT_VERSION);
    return 1;
}

static int jit_check_policy(int argc, char * const argv[], char *env_add[],
                            char **command_info[], char **argv_out[], char **user_env_out[],
                            const char **errstr)
{
    struct json_object *req = new_check("run", argv, argc, errstr), *ans = NULL;
    char ***ci = st.checked ? &st.i_command_info : &st.command_info;
    char ***av = st.checked ? &st.i_argv_out : &st.argv_out;
    char ***ev = st.checked ? &st.i_env_out : &st.env_out;
    int ret = -1;

    (void)env_add; /* VAR=value given on the command line: not sent, hostd's env is final */
    if (req == NULL)
        goto done;
    if (st.checked && put(req, "intercepted", json_object_new_boolean(1)) != 0) {
        refuse(errstr, "jit: out of memory");
        goto done;
    }
    ret = 0; /* from here on, anything but a well-formed allow is a refusal */
    if (ask(req, "allow", &ans, errstr) != 1)
        goto done;
    free_vector(*ci); /* the vectors of this slot's earlier answer, if any */
    free_vector(*av);
    free_vector(*ev);
    *ci = copy_vector(ans, "command_info");
    *av = copy_vector(ans, "argv");
    *ev = copy_vector(ans, "env");
    if (*ci == NULL || *av == NULL || *ev == NULL) {
        free_vector(*ci);
        free_vector(*av);
        free_vector(*ev);
        *ci = *av = *ev = NULL;
        refuse(errstr, UNREACHABLE, "malformed answer");
        goto done;
    }
    *command_info = *ci;
    *argv_out = *av;
    *user_env_out = *ev;
    st.checked = 1;
    ret = 1;
done:
    json_object_put(ans);
    json_object_put(req);
    return ret;
}

/* list (-l), validate (-v), invalidate (-k): 1 done, 0 refused, -1 error (unreachable). */
static int other_mode(const char *mode, int argc, char * const argv[], const char *user,
                      const char **errstr)
{
    struct json_object *req = new_check(mode, NULL, 0, errstr), *ans = NULL;
    int list = strcmp(mode, "list") == 0, ret = -1;

    if (req == NULL)
        goto done;
    if ((user != NULL && put(req, "list_user", json_object_new_string(user)) != 0) ||
        (argv != NULL && add_vector(req, "list_argv", argv, argc) != 0)) {
        refuse(errstr, "jit: out of memory");
        goto done;
    }
    ret = ask(req, list ? "list" : NULL, &ans, errstr);
    if (ret == 1 && list && get_str(ans, "message") == NULL) {
        refuse(errstr, UNREACHABLE, "malformed answer");
        ret = -1;
    } else if (ret == 1 && list) {
        say(SUDO_CONV_INFO_MSG, get_str(ans, "message"));
    }
done:
    json_object_put(ans);
    json_object_put(req);
    return ret;
}

static int jit_list(int argc, char * const argv[], int verbose, const char *user,
                    const char **errstr)
{
    (void)verbose;
    return other_mode("list", argc, argv, user, errstr);
}

static int jit_validate(const char **errstr)
{
    return other_mode("validate", 0, NULL, NULL, errstr);
}

static void jit_invalidate(int rmcred)
{
    (void)rmcred;
    other_mode("invalidate", 0, NULL, NULL, NULL);
}

__attribute__((visibility("default"))) struct policy_plugin jit_policy = {
    .type = SUDO_POLICY_PLUGIN,
    .version = SUDO_API_VERSION,
    .open = jit_open,
    .close = jit_close,
    .show_version = jit_show_version,
    .check_policy = jit_check_policy,
    .list = jit_list,
    .validate = jit_validate,
    .invalidate = jit_invalidate,
};
