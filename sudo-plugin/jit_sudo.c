/*
 * jit_sudo.so: sudo policy plugin (sudo_plugin(5), API 1.x) for jitaccess.
 *
 * A thin shim: it passes what sudo knows to jit-hostd over /run/jit/hostd.sock
 * (docs/PROTOCOL.md, DESIGN.md section 6) and returns what hostd answers. No
 * policy lives here; anything unexpected refuses (fail closed).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
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

#ifndef JIT_SOCKET
#define JIT_SOCKET "/run/jit/hostd.sock"
#endif
#ifndef JIT_VERSION
#define JIT_VERSION "0.1.0"
#endif
#define LINE_MAX_BYTES 65536 /* one answer line, newline included */
#define CONNECT_TIMEOUT_MS 2000
#define ANSWER_TIMEOUT_MS 10000
#define PASSWORD_TRIES 3
#define WAIT_MAX_S 86400

/* State the API forces on us: what open() received and what must outlive a call. */
static struct {
    unsigned int version;
    sudo_conv_t conv;
    sudo_printf_t say_printf;
    char * const *settings;
    char * const *user_info;
    char * const *user_env;
    char **command_info;
    char **argv_out;
    char **env_out;
    char errbuf[1024]; /* errstr points here: valid until close() */
} st;

struct conn {
    int fd;
    size_t len;
    char buf[LINE_MAX_BYTES + 1];
};

/* Shows TEXT and a newline through the conversation function. */
static void say(int type, const char *text)
{
    struct sudo_conv_message msgs[2] = {
        { .msg_type = type, .msg = text }, { .msg_type = type, .msg = "\n" } };
    struct sudo_conv_reply replies[2] = { { NULL }, { NULL } };

    if (st.conv != NULL)
        st.conv(2, msgs, replies, NULL);
}

/* Stores TEXT for errstr (sudo hands it to audit plugins); errstr exists since 1.15. */
static void set_errstr(const char **errstr, const char *text)
{
    snprintf(st.errbuf, sizeof(st.errbuf), "%s", text);
    if (errstr != NULL && st.version >= SUDO_API_MKVERSION(1, 15))
        *errstr = st.errbuf;
}

static void refuse(const char **errstr, const char *text)
{
    say(SUDO_CONV_ERROR_MSG, text);
    set_errstr(errstr, text);
}

static void unreachable(const char **errstr, const char *why)
{
    char text[512];

    snprintf(text, sizeof(text), "jit: cannot reach the access daemon (%s)", why);
    refuse(errstr, text);
}

static const char *get_str(struct json_object *obj, const char *key);

/* Shows hostd's refusal; one without a message is a malformed answer. */
static void refusal(struct json_object *ans, const char **errstr)
{
    if (get_str(ans, "message") != NULL)
        refuse(errstr, get_str(ans, "message"));
    else
        unreachable(errstr, "malformed answer");
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for EVENTS on fd until DEADLINE (monotonic ms); 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        struct pollfd pfd = { .fd = fd, .events = events };
        int n;

        if (left <= 0)
            return 0;
        n = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

/* Connects to hostd: a socket owned by root, served by a root peer. */
static int conn_open(struct conn *c, const char **why)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    struct timeval tv = { .tv_sec = CONNECT_TIMEOUT_MS / 1000 };
    struct ucred cred;
    socklen_t credlen = sizeof(cred);
    struct stat sb;
    int rc;

    c->len = 0;
    if (lstat(JIT_SOCKET, &sb) != 0)
        return *why = "no socket " JIT_SOCKET, -1;
    if (!S_ISSOCK(sb.st_mode) || sb.st_uid != 0)
        return *why = JIT_SOCKET " is not a socket owned by root", -1;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return *why = "socket failed", -1;
    /* AF_UNIX connect waits for room in the backlog: SO_SNDTIMEO bounds that wait. */
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    memcpy(sun.sun_path, JIT_SOCKET, sizeof(JIT_SOCKET));
    do
        rc = connect(c->fd, (struct sockaddr *)&sun, sizeof(sun));
    while (rc != 0 && errno == EINTR);
    if (rc != 0)
        return *why = (errno == EAGAIN || errno == EINPROGRESS) ? "connect timed out"
                                                                : "connect failed", -1;
    if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) != 0 || cred.uid != 0)
        return *why = "the daemon is not running as root", -1;
    return 0;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->len = 0;
}

static int send_all(int fd, const char *p, size_t n, long long deadline, const char **why)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno != EINTR && errno != EAGAIN) {
            return *why = "connection closed while sending", -1;
        } else if (w < 0 && errno == EAGAIN && wait_fd(fd, POLLOUT, deadline) != 1) {
            return *why = "timed out sending", -1;
        }
    }
    return 0;
}

/* Sends REQ as one line; the serialized text is wiped afterwards (it may hold a password). */
static int send_request(struct conn *c, struct json_object *req, const char **why)
{
    size_t len = 0;
    const char *text = json_object_to_json_string_length(
        req, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    long long deadline = now_ms() + ANSWER_TIMEOUT_MS;
    int rc = -1;

    if (text == NULL)
        return *why = "out of memory", -1;
    if (len + 1 > LINE_MAX_BYTES)
        *why = "request over 64 KiB";
    else if (send_all(c->fd, text, len, deadline, why) == 0)
        rc = send_all(c->fd, "\n", 1, deadline, why);
    explicit_bzero((char *)text, len);
    return rc;
}

/* A string field without embedded NULs, or NULL. */
static const char *get_str(struct json_object *obj, const char *key)
{
    struct json_object *v;

    if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    if (strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v))
        return NULL;
    return json_object_get_string(v);
}

/* Reads one answer line within TIMEOUT_MS: a JSON object with bool "ok" and string "code". */
static struct json_object *read_answer(struct conn *c, long long timeout_ms, const char **why)
{
    long long deadline = now_ms() + timeout_ms;
    struct json_tokener *tok;
    struct json_object *ans, *ok;
    char *nl;
    size_t linelen;

    while ((nl = memchr(c->buf, '\n', c->len)) == NULL) {
        ssize_t r;

        if (c->len == LINE_MAX_BYTES)
            return *why = "answer over 64 KiB", NULL;
        r = recv(c->fd, c->buf + c->len, LINE_MAX_BYTES - c->len, MSG_DONTWAIT);
        if (r > 0)
            c->len += (size_t)r;
        else if (r == 0)
            return *why = "connection closed", NULL;
        else if (errno != EINTR && errno != EAGAIN)
            return *why = "read failed", NULL;
        else if (errno == EAGAIN && wait_fd(c->fd, POLLIN, deadline) != 1)
            return *why = "timed out", NULL;
    }
    linelen = (size_t)(nl - c->buf);
    *nl = '\0';
    tok = json_tokener_new();
    if (tok == NULL)
        return *why = "out of memory", NULL;
    ans = json_tokener_parse_ex(tok, c->buf, (int)linelen);
    if (ans != NULL && json_tokener_get_parse_end(tok) != linelen) {
        json_object_put(ans);
        ans = NULL;
    }
    json_tokener_free(tok);
    c->len -= linelen + 1;
    memmove(c->buf, nl + 1, c->len);
    if (ans == NULL || !json_object_is_type(ans, json_type_object) ||
        !json_object_object_get_ex(ans, "ok", &ok) ||
        !json_object_is_type(ok, json_type_boolean) || get_str(ans, "code") == NULL) {
        json_object_put(ans);
        return *why = "malformed answer", NULL;
    }
    return ans;
}

static int answer_ok(struct json_object *ans)
{
    return json_object_get_boolean(json_object_object_get(ans, "ok"));
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

/* Copies the array of strings at KEY into a NULL-terminated vector; NULL if malformed. */
static char **copy_vector(struct json_object *ans, const char *key)
{
    struct json_object *arr, *item;
    char **vec;
    size_t n;

    if (!json_object_object_get_ex(ans, key, &arr) || !json_object_is_type(arr, json_type_array))
        return NULL;
    n = json_object_array_length(arr);
    vec = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; vec != NULL && i < n; i++) {
        item = json_object_array_get_idx(arr, i);
        if (!json_object_is_type(item, json_type_string) ||
            strlen(json_object_get_string(item)) != (size_t)json_object_get_string_len(item) ||
            (vec[i] = strdup(json_object_get_string(item))) == NULL) {
            free_vector(vec);
            return NULL;
        }
    }
    return vec;
}

/* The fields every sudo.check carries; the caller adds argv and the mode's own fields. */
static struct json_object *new_check(const char *mode)
{
    struct json_object *req = json_object_new_object();

    if (req == NULL || put(req, "v", json_object_new_int(1)) != 0 ||
        put(req, "op", json_object_new_string("sudo.check")) != 0 ||
        put(req, "mode", json_object_new_string(mode)) != 0 ||
        add_vector(req, "settings", st.settings, -1) != 0 ||
        add_vector(req, "user_info", st.user_info, -1) != 0 ||
        add_vector(req, "env", st.user_env, -1) != 0) {
        json_object_put(req);
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

/*
 * Sends REQ and returns hostd's final answer, after any password prompts and any
 * approval wait; NULL with *why set when hostd cannot be reached or answers nonsense.
 */
static struct json_object *exchange(struct json_object *req, const char **why)
{
    struct conn *c = malloc(sizeof(*c));
    struct json_object *ans = NULL, *wait = NULL, *tmo;
    int tries = 0;

    if (c == NULL)
        return *why = "out of memory", NULL;
    c->fd = -1;
    for (;;) {
        if (conn_open(c, why) != 0 || send_request(c, req, why) != 0)
            break;
        drop_password(req);
        ans = read_answer(c, ANSWER_TIMEOUT_MS, why);
        if (ans == NULL || answer_ok(ans) || strcmp(get_str(ans, "code"), "auth_required") != 0 ||
            tries++ == PASSWORD_TRIES)
            break;
        /* hostd drops a quick connection idle for 10 s: ask again on a new one. */
        conn_close(c);
        if (get_str(ans, "message") == NULL || add_password(req, get_str(ans, "message")) != 0) {
            *why = get_str(ans, "message") == NULL ? "malformed answer" : "no password given";
            json_object_put(ans);
            ans = NULL;
            break;
        }
        json_object_put(ans);
        ans = NULL;
    }
    drop_password(req);
    if (ans != NULL && answer_ok(ans) && get_str(ans, "decision") != NULL &&
        strcmp(get_str(ans, "decision"), "pending") == 0) {
        const char *id = get_str(ans, "request_id"), *text = get_str(ans, "message");
        long long timeout;

        if (id == NULL || text == NULL || !json_object_object_get_ex(ans, "timeout", &tmo) ||
            !json_object_is_type(tmo, json_type_int) ||
            (timeout = json_object_get_int64(tmo)) < 0 || timeout > WAIT_MAX_S) {
            *why = "malformed answer";
        } else if ((wait = json_object_new_object()) == NULL ||
                   put(wait, "v", json_object_new_int(1)) != 0 ||
                   put(wait, "op", json_object_new_string("sudo.wait")) != 0 ||
                   put(wait, "id", json_object_new_string(id)) != 0) {
            *why = "out of memory";
        } else {
            say(SUDO_CONV_ERROR_MSG, text);
            if (send_request(c, wait, why) == 0) {
                json_object_put(ans);
                ans = read_answer(c, (timeout + 5) * 1000, why);
                goto done;
            }
        }
        json_object_put(ans);
        ans = NULL;
    }
done:
    json_object_put(wait);
    conn_close(c);
    free(c);
    return ans;
}

static int jit_open(unsigned int version, sudo_conv_t conversation,
                    sudo_printf_t sudo_plugin_printf, char * const settings[],
                    char * const user_info[], char * const user_env[],
                    char * const plugin_options[], const char **errstr)
{
    (void)plugin_options;
    st.version = version;
    st.conv = conversation;
    st.say_printf = sudo_plugin_printf;
    if (SUDO_API_VERSION_GET_MAJOR(version) != SUDO_API_VERSION_MAJOR) {
        sudo_plugin_printf(SUDO_CONV_ERROR_MSG,
                           "jit: incompatible sudo plugin API major version %u, expected %d\n",
                           SUDO_API_VERSION_GET_MAJOR(version), SUDO_API_VERSION_MAJOR);
        set_errstr(errstr, "jit: incompatible sudo plugin API version");
        return -1;
    }
    st.settings = settings;
    st.user_info = user_info;
    st.user_env = user_env;
    return 1;
}

static void jit_close(int exit_status, int error)
{
    (void)exit_status;
    (void)error;
    free_vector(st.command_info);
    free_vector(st.argv_out);
    free_vector(st.env_out);
    st.command_info = st.argv_out = st.env_out = NULL;
}

static int jit_show_version(int verbose)
{
    (void)verbose;
    st.say_printf(SUDO_CONV_INFO_MSG, "jit_sudo policy plugin version %s\n", JIT_VERSION);
    return 1;
}

static int jit_check_policy(int argc, char * const argv[], char *env_add[],
                            char **command_info[], char **argv_out[], char **user_env_out[],
                            const char **errstr)
{
    struct json_object *req = new_check("run"), *ans = NULL;
    const char *why = "out of memory", *decision;
    int ret = -1;

    (void)env_add; /* VAR=value from the command line: not sent, hostd's env is final */
    if (req == NULL || add_vector(req, "argv", argv, argc) != 0)
        goto done;
    ret = 0;
    if ((ans = exchange(req, &why)) == NULL) {
        unreachable(errstr, why);
        goto done;
    }
    decision = get_str(ans, "decision");
    if (!answer_ok(ans)) {
        refusal(ans, errstr);
        goto done;
    }
    if (decision == NULL || strcmp(decision, "allow") != 0) {
        unreachable(errstr, "unexpected answer");
        goto done;
    }
    jit_close(0, 0); /* vectors of an earlier call, if any */
    st.command_info = copy_vector(ans, "command_info");
    st.argv_out = copy_vector(ans, "argv");
    st.env_out = copy_vector(ans, "env");
    if (st.command_info == NULL || st.argv_out == NULL || st.env_out == NULL) {
        jit_close(0, 0);
        unreachable(errstr, "malformed answer");
        goto done;
    }
    *command_info = st.command_info;
    *argv_out = st.argv_out;
    *user_env_out = st.env_out;
    ret = 1;
done:
    json_object_put(ans);
    json_object_put(req);
    return ret;
}

/* list, validate, invalidate: 1 on an ok answer, 0 on a refusal, -1 if hostd is unreachable. */
static int simple_check(struct json_object *req, const char *decision, const char **errstr)
{
    struct json_object *ans = NULL;
    const char *why = "out of memory";
    int ret = -1;

    if (req == NULL || add_vector(req, "argv", NULL, 0) != 0) {
        unreachable(errstr, why);
        goto done;
    }
    if ((ans = exchange(req, &why)) == NULL) {
        unreachable(errstr, why);
        goto done;
    }
    if (!answer_ok(ans)) {
        refusal(ans, errstr);
        ret = 0;
        goto done;
    }
    if (decision != NULL && (get_str(ans, "decision") == NULL ||
                             strcmp(get_str(ans, "decision"), decision) != 0 ||
                             get_str(ans, "message") == NULL)) {
        unreachable(errstr, "unexpected answer");
        goto done;
    }
    if (decision != NULL)
        say(SUDO_CONV_INFO_MSG, get_str(ans, "message"));
    ret = 1;
done:
    json_object_put(ans);
    json_object_put(req);
    return ret;
}

static int jit_list(int argc, char * const argv[], int verbose, const char *user,
                    const char **errstr)
{
    struct json_object *req = new_check("list");

    (void)verbose;
    if (req != NULL && user != NULL &&
        put(req, "list_user", json_object_new_string(user)) != 0)
        return json_object_put(req), -1;
    if (req != NULL && argv != NULL && add_vector(req, "list_argv", argv, argc) != 0)
        return json_object_put(req), -1;
    return simple_check(req, "list", errstr);
}

static int jit_validate(const char **errstr)
{
    return simple_check(new_check("validate"), NULL, errstr);
}

static void jit_invalidate(int rmcred)
{
    (void)rmcred;
    simple_check(new_check("invalidate"), NULL, NULL);
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
