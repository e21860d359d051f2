/*
 * Test driver: dlopens jit_sudo.so, finds jit_policy and drives it as sudo would,
 * with a fake conversation (recording output, answering password prompts) and a
 * fake printf. usage: driver CASE PATH/jit_sudo.so; exit 0 if every check passed.
 * The fake hostd on /run/jit/hostd.sock is run_case.py's job.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sudo_plugin.h>

static char output[1 << 20]; /* everything shown, "E:" error, "I:" info, "P:" prompt */
static size_t output_len;
static int prompts;
static int failures;

/* Appends TEXT, tagged at the start of each line of output. */
static void record(const char *tag, const char *text)
{
    if (output_len != 0 && output[output_len - 1] != '\n')
        tag = "";
    output_len += (size_t)snprintf(output + output_len, sizeof(output) - output_len, "%s%s",
                                   tag, text);
    if (output_len >= sizeof(output))
        output_len = sizeof(output) - 1;
}

static int conv(int num_msgs, const struct sudo_conv_message msgs[],
                struct sudo_conv_reply replies[], struct sudo_conv_callback *callback)
{
    static const char *passwords[] = { "secret", "wrong2", "wrong3" };
    (void)callback;
    for (int i = 0; i < num_msgs; i++) {
        switch (msgs[i].msg_type & 0xff) {
        case SUDO_CONV_ERROR_MSG:
            record("E:", msgs[i].msg);
            break;
        case SUDO_CONV_INFO_MSG:
            record("I:", msgs[i].msg);
            break;
        default:
            record("P:", msgs[i].msg);
            record("", "\n"); /* sudo moves to the next line after the reply */
            /* the first answer is "secret" unless the case wants three wrong ones */
            replies[i].reply = strdup(getenv("WRONG") && prompts == 0 ? "wrong1"
                                                                       : passwords[prompts % 3]);
            prompts++;
        }
    }
    return 0;
}

static int fake_printf(int msg_type, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    record(msg_type == SUDO_CONV_ERROR_MSG ? "E:" : "I:", buf);
    return n;
}

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);            \
            failures++;                                                                 \
        }                                                                               \
    } while (0)

static void on_alarm(int signo)
{
    (void)signo; /* like sudo's handler: the signal is only recorded */
}

static int vec_eq(char **got, const char * const *want)
{
    size_t i;

    for (i = 0; got != NULL && got[i] != NULL && want[i] != NULL; i++) {
        if (strcmp(got[i], want[i]) != 0)
            return 0;
    }
    return got != NULL && got[i] == NULL && want[i] == NULL;
}

static int shown(const char *text)
{
    return strstr(output, text) != NULL;
}

int main(int argc, char **argv)
{
    static const char * const want_info[] = { "command=/usr/bin/id", "runas_uid=0",
                                              "runas_gid=0", "intercept=true", NULL };
    static const char * const want_argv[] = { "/usr/bin/id", "-u", NULL };
    static const char * const want_env[] = { "PATH=/usr/sbin:/usr/bin", "HOME=/root",
                                             "LANG=C.UTF-8", NULL };
    char * const settings[] = { "progname=sudo", "network_addrs=10.0.0.5/255.0.0.0",
                                "plugin_dir=/usr/libexec/sudo", NULL };
    char * const user_info[] = { "user=alice", "uid=1001", "gid=1001", "cwd=/home/alice",
                                 "tty=/dev/pts/3", "host=web1", "pid=4242", NULL };
    static char big[70000];
    char *user_env[] = { "PATH=/home/alice/bin:/usr/bin", "TERM=xterm",
                         "LD_PRELOAD=/tmp/evil.so", NULL, NULL };
    char * const cmd[] = { "id", "-u", NULL };
    char **info = NULL, **run_argv = NULL, **run_env = NULL;
    const char *errstr = NULL, *c;
    struct policy_plugin *p;
    void *so;
    int rc;

    if (argc != 3) {
        fprintf(stderr, "usage: driver CASE jit_sudo.so\n");
        return 2;
    }
    c = argv[1];
    if (strcmp(c, "request_too_large") == 0) { /* the request would be over 64 KiB */
        memset(big, 'x', sizeof(big) - 1);
        memcpy(big, "BIG=", 4);
        user_env[3] = big;
    }
    so = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
    if (so == NULL || (p = dlsym(so, "jit_policy")) == NULL) {
        fprintf(stderr, "cannot load jit_policy: %s\n", dlerror());
        return 2;
    }
    CHECK(p->type == SUDO_POLICY_PLUGIN && p->version == SUDO_API_VERSION);

    if (strcmp(c, "api_major") == 0) {
        rc = p->open(SUDO_API_MKVERSION(2, 0), conv, fake_printf, settings, user_info,
                     user_env, NULL, &errstr);
        CHECK(rc == -1);
        CHECK(errstr != NULL && strstr(errstr, "incompatible") != NULL);
        CHECK(shown("E:jit: incompatible sudo plugin API major version 2"));
        goto done;
    }
    rc = p->open(SUDO_API_VERSION, conv, fake_printf, settings, user_info, user_env, NULL,
                 &errstr);
    CHECK(rc == 1);
    if (strcmp(c, "version") == 0) {
        p->show_version(0);
        CHECK(shown("I:jit_sudo policy plugin version "));
    } else if (strcmp(c, "list") == 0) {
        rc = p->list(2, cmd, 0, "bob", &errstr);
        CHECK(rc == 1);
        CHECK(shown("I:alice may run as root: ALL (grant g-1, until 12:00 UTC)\n"));
    } else if (strcmp(c, "validate") == 0) {
        CHECK(p->validate(&errstr) == 1);
    } else if (strcmp(c, "invalidate") == 0) {
        p->invalidate(1);
    } else if (strcmp(c, "validate_unreachable") == 0) {
        CHECK(p->validate(&errstr) == -1);
        CHECK(shown("E:jit: cannot reach the access daemon (no socket /run/jit/hostd.sock)\n"));
    } else {
        if (strcmp(c, "pending_cancel") == 0) { /* Ctrl-C while waiting for approval */
            struct sigaction sa = { .sa_handler = on_alarm };

            sigaction(SIGALRM, &sa, NULL);
            alarm(1);
        }
        rc = p->check_policy(2, cmd, NULL, &info, &run_argv, &run_env, &errstr);
        if (strcmp(c, "allow") == 0 || strcmp(c, "password") == 0 ||
            strcmp(c, "pending_allow") == 0 || strcmp(c, "big_allow") == 0) {
            CHECK(rc == 1);
            CHECK(vec_eq(info, want_info));
            CHECK(vec_eq(run_argv, want_argv));
            if (strcmp(c, "big_allow") != 0)
                CHECK(vec_eq(run_env, want_env));
            else
                CHECK(run_env != NULL && run_env[3] != NULL && strlen(run_env[3]) > 65000);
            CHECK(!shown("E:") || strcmp(c, "pending_allow") == 0);
        } else {
            CHECK(rc == 0);
            CHECK(errstr != NULL);
            CHECK(info == NULL && run_argv == NULL && run_env == NULL);
            /* run_case.py passes the expected refusal text */
            CHECK(getenv("EXPECT") != NULL && errstr != NULL &&
                  strcmp(errstr, getenv("EXPECT")) == 0);
            CHECK(getenv("EXPECT") != NULL && shown(getenv("EXPECT")));
        }
        if (strcmp(c, "password") == 0)
            CHECK(prompts == 1 && shown("P:[jit] password for alice: \n"));
        if (strcmp(c, "password_wrong") == 0)
            CHECK(prompts == 3);
        if (strncmp(c, "pending", 7) == 0)
            CHECK(shown("E:jit: request r-1: waiting for approval (Ctrl-C to cancel)\n"));
    }
    p->close(0, 0);
done:
    /* No dlclose(): sudo never unloads its policy plugin, whose answers must outlive
     * close() (sudoedit copies files back to paths in them); valgrind still sees that
     * memory as reachable, and reports anything really lost. */
    (void)so;
    if (failures != 0)
        fprintf(stderr, "output was:\n%s\n", output);
    return failures == 0 ? 0 : 1;
}
