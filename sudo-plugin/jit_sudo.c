/*
 * jit_sudo.so: sudo policy plugin (sudo_plugin(5), API 1.x) for jitaccess.
 *
 * A thin shim: it passes what sudo knows to jit-hostd over /run/jit/hostd.sock
 * (docs/PROTOCOL.md, DESIGN.md sections 6 and 13) and returns what hostd answers.
 * No policy lives here; anything unexpected refuses (fail closed).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <sudo_plugin.h>

#include "jit_conn.h"

#ifndef JIT_VERSION
#define JIT_VERSION "unknown"
#endif
#define CONNECT_TIMEOUT_MS 2000
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

static int is_decision(struct json_object *ans, const char *decision)
{
    const char *d = jit_get_str(ans, "decision");

    return jit_answer_ok(ans) && d != NULL && strcmp(d, decision) == 0;
}

/* Adds VEC (N strings, or up to its NULL if N < 0) to REQ at KEY. */
static int add_vector(struct json_object *req, const char *key, char * const *vec, int n)
{
    struct json_object *arr = json_object_new_array();

    if (jit_put(req, key, arr) != 0)
        return -1;
    for (int i = 0; vec != NULL && (n < 0 || i < n) && vec[i] != NULL; i++) {
        if (jit_put(arr, NULL, json_object_new_string(vec[i])) != 0)
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
        const char *s = jit_str_of(json_object_array_get_idx(arr, i));

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

    if (req == NULL || jit_put(req, "v", json_object_new_int(1)) != 0 ||
        jit_put(req, "op", json_object_new_string("sudo.check")) != 0 ||
        jit_put(req, "mode", json_object_new_string(mode)) != 0 ||
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
        rc = jit_put(req, "password", json_object_new_string(repl.reply));
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
static struct json_object *await_approval(struct jit_conn *c, struct json_object *pending,
                                          const char **why)
{
    struct json_object *wait = json_object_new_object(), *tmo, *ans = NULL;
    const char *id = jit_get_str(pending, "request_id"), *text = jit_get_str(pending, "message");
    int64_t timeout = -1;

    if (json_object_object_get_ex(pending, "timeout", &tmo) &&
        json_object_is_type(tmo, json_type_int))
        timeout = json_object_get_int64(tmo);
    *why = "malformed answer";
    if (id != NULL && text != NULL && timeout >= 0 && timeout <= WAIT_MAX_S) {
        *why = "out of memory";
        if (wait != NULL && jit_put(wait, "v", json_object_new_int(1)) == 0 &&
            jit_put(wait, "op", json_object_new_string("sudo.wait")) == 0 &&
            jit_put(wait, "id", json_object_new_string(id)) == 0) {
            say(SUDO_CONV_ERROR_MSG, text);
            if (jit_conn_send(c, wait, jit_deadline_in(ANSWER_TIMEOUT_MS), -1, why) == 0)
                ans = jit_conn_read(c, jit_deadline_in((timeout + 5) * 1000), 1, why);
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
    struct jit_conn *c = malloc(sizeof(*c));
    struct json_object *ans = NULL;
    const char *why = "out of memory";
    int ret = -1, tries = 0;

    if (c == NULL)
        goto done;
    c->fd = -1;
    for (;;) {
        if (jit_conn_open(c, JIT_SOCKET, CONNECT_TIMEOUT_MS, &why) != 0 ||
            jit_conn_send(c, req, jit_deadline_in(ANSWER_TIMEOUT_MS), -1, &why) != 0)
            goto done;
        drop_password(req);
        if ((ans = jit_conn_read(c, jit_deadline_in(ANSWER_TIMEOUT_MS), 0, &why)) == NULL)
            goto done;
        if (jit_answer_ok(ans) || strcmp(jit_get_str(ans, "code"), "auth_required") != 0 ||
            tries++ == PASSWORD_TRIES)
            break;
        jit_conn_close(c); /* hostd drops a connection idle for 10 s: ask again on a new one */
        why = "malformed answer";
        if (jit_get_str(ans, "message") == NULL)
            goto done;
        if (add_password(req, jit_get_str(ans, "message")) != 0) {
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
    why = jit_answer_ok(ans) ? "unexpected answer" : "malformed answer";
    if (!jit_answer_ok(ans) && jit_get_str(ans, "message") != NULL) {
        refuse(errstr, "%s", jit_get_str(ans, "message"));
        ret = 0;
    } else if (jit_answer_ok(ans) && (want == NULL || is_decision(ans, want))) {
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
        jit_conn_close(c);
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
    if (st.checked && jit_put(req, "intercepted", json_object_new_boolean(1)) != 0) {
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
    if ((user != NULL && jit_put(req, "list_user", json_object_new_string(user)) != 0) ||
        (argv != NULL && add_vector(req, "list_argv", argv, argc) != 0)) {
        refuse(errstr, "jit: out of memory");
        goto done;
    }
    ret = ask(req, list ? "list" : NULL, &ans, errstr);
    if (ret == 1 && list && jit_get_str(ans, "message") == NULL) {
        refuse(errstr, UNREACHABLE, "malformed answer");
        ret = -1;
    } else if (ret == 1 && list) {
        say(SUDO_CONV_INFO_MSG, jit_get_str(ans, "message"));
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
