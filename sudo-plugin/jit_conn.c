/*
 * jit_conn.c: the client connection to jit-hostd shared by jit_sudo.so and pam_jit.so
 * (see jit_conn.h). It exists once; both Makefiles compile this file into their module.
 */
#define _GNU_SOURCE
#include "jit_conn.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Hidden in both modules: only their entry points are exported. */
#pragma GCC visibility push(hidden)

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long jit_deadline_in(long long ms)
{
    return now_ms() + ms;
}

/*
 * Waits for EVENTS on FD until DEADLINE: 1 ready, 0 timed out, -1 interrupted by a
 * signal when INTERRUPTIBLE (sudo catches SIGINT and friends with a handler that only
 * records them, so Ctrl-C reaches us as EINTR, nothing more).
 */
static int wait_fd(int fd, short events, long long deadline, int interruptible)
{
    struct pollfd pfd = { .fd = fd, .events = events };
    long long left;
    int n;

    do {
        left = deadline - now_ms();
        n = left <= 0 ? 0 : poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
        if (n < 0 && errno == EINTR && interruptible)
            return -1;
    } while ((n < 0 && errno == EINTR) || (n == 0 && left > 60000));
    return n > 0;
}

int jit_conn_open(struct jit_conn *c, const char *path, int connect_ms, const char **why)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    struct timeval tv = { .tv_sec = connect_ms / 1000, .tv_usec = connect_ms % 1000 * 1000 };
    struct ucred cred;
    socklen_t credlen = sizeof(cred);
    struct stat sb;
    int rc;

    c->fd = -1;
    if (strlen(path) >= sizeof(sun.sun_path))
        return *why = "socket path too long", -1;
    strcpy(sun.sun_path, path);
    if (lstat(path, &sb) != 0) {
        snprintf(c->why, sizeof(c->why), "no socket %s", path);
        return *why = c->why, -1;
    }
    if (!S_ISSOCK(sb.st_mode) || sb.st_uid != 0) {
        snprintf(c->why, sizeof(c->why), "%s is not a socket owned by root", path);
        return *why = c->why, -1;
    }
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

void jit_conn_close(struct jit_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* One send of LEN bytes of TEXT and the request's closing newline (one sendmsg: hostd
 * reads the whole line at once), carrying FD (SCM_RIGHTS) when FD >= 0. */
static ssize_t send_some(int sock, const char *text, size_t len, int fd)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    struct iovec iov[2] = { { .iov_base = (void *)text, .iov_len = len },
                            { .iov_base = (void *)"\n", .iov_len = 1 } };
    struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };
    struct cmsghdr *cmsg;

    if (fd >= 0) {
        memset(&control, 0, sizeof(control));
        msg.msg_control = control.buf;
        msg.msg_controllen = sizeof(control.buf);
        cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
    }
    return sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

int jit_conn_send(struct jit_conn *c, struct json_object *req, long long deadline,
                  int pass_fd, const char **why)
{
    size_t len = 0, done = 0;
    const char *text = json_object_to_json_string_length(
        req, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    const char *err = text == NULL ? "out of memory" : NULL;
    ssize_t n;

    if (text != NULL && len + 1 > JIT_LINE_MAX)
        err = "request over 64 KiB";
    while (err == NULL && done < len + 1) {
        /* the rest of the text and the newline; once the text is out, the newline */
        n = send_some(c->fd, text + (done < len ? done : len), done < len ? len - done : 0,
                      done == 0 ? pass_fd : -1);
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

const char *jit_str_of(struct json_object *j)
{
    const char *s = json_object_get_string(j);

    if (!json_object_is_type(j, json_type_string) ||
        strlen(s) != (size_t)json_object_get_string_len(j))
        return NULL;
    return s;
}

const char *jit_get_str(struct json_object *obj, const char *key)
{
    return jit_str_of(json_object_object_get(obj, key));
}

int jit_answer_ok(struct json_object *ans)
{
    return json_object_get_boolean(json_object_object_get(ans, "ok"));
}

struct json_object *jit_parse_answer(const char *buf, size_t len)
{
    const char *nl = memchr(buf, '\n', len);
    struct json_tokener *tok;
    struct json_object *ans;

    if (nl == NULL || nl != buf + len - 1 || len > JIT_LINE_MAX ||
        (tok = json_tokener_new()) == NULL)
        return NULL;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    ans = json_tokener_parse_ex(tok, buf, (int)(len - 1));
    if (ans == NULL || json_tokener_get_error(tok) != json_tokener_success ||
        json_tokener_get_parse_end(tok) != len - 1 ||
        !json_object_is_type(ans, json_type_object) ||
        !json_object_is_type(json_object_object_get(ans, "ok"), json_type_boolean) ||
        jit_get_str(ans, "code") == NULL) {
        json_object_put(ans);
        ans = NULL;
    }
    json_tokener_free(tok);
    return ans;
}

struct json_object *jit_conn_read(struct jit_conn *c, long long deadline, int interruptible,
                                  const char **why)
{
    struct json_object *ans;
    size_t len = 0;
    ssize_t n;

    while (memchr(c->buf, '\n', len) == NULL) {
        if (len == JIT_LINE_MAX)
            return *why = "answer over 64 KiB", NULL;
        n = recv(c->fd, c->buf + len, JIT_LINE_MAX - len, MSG_DONTWAIT);
        if (n > 0)
            len += (size_t)n;
        else if (n == 0)
            return *why = "connection closed", NULL;
        else if (errno != EINTR && errno != EAGAIN)
            return *why = "read failed", NULL;
        else if (errno == EAGAIN && (n = wait_fd(c->fd, POLLIN, deadline, interruptible)) != 1)
            return *why = n < 0 ? "cancelled" : "timed out", NULL;
    }
    if ((ans = jit_parse_answer(c->buf, len)) == NULL)
        *why = "malformed answer";
    return ans;
}

int jit_put(struct json_object *obj, const char *key, struct json_object *val)
{
    int rc = -1;

    if (val != NULL)
        rc = key ? json_object_object_add(obj, key, val) : json_object_array_add(obj, val);
    if (rc != 0)
        json_object_put(val);
    return rc;
}

#pragma GCC visibility pop
