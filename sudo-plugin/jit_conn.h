/*
 * jit_conn: the one client connection to jit-hostd, compiled into both jit_sudo.so
 * and pam_jit.so (docs/PROTOCOL.md; DESIGN.md §13 "pam_jit in C"). The socket must be a
 * socket owned by root and its peer must run as root (SO_PEERCRED), as pam_sss checks
 * sssd's; one request line out, one bounded answer line in, every wait bounded.
 */
#ifndef JIT_CONN_H
#define JIT_CONN_H

#include <stddef.h>

#include <json-c/json.h>

#define JIT_SOCKET "/run/jit/hostd.sock"
#define JIT_LINE_MAX 65536 /* one line, newline included */

struct jit_conn {
    int fd;
    char why[160]; /* a *why that names the socket path */
    char buf[JIT_LINE_MAX + 1];
};

/* CLOCK_MONOTONIC milliseconds MS from now: the deadlines below are absolute. */
long long jit_deadline_in(long long ms);

/*
 * Connects to PATH (a socket owned by root, served by root); a full backlog waits at
 * most CONNECT_MS. 0, or -1 with *why set. C->fd is -1 until it succeeds.
 */
int jit_conn_open(struct jit_conn *c, const char *path, int connect_ms, const char **why);
void jit_conn_close(struct jit_conn *c);

/* Sends REQ as one line by DEADLINE, then wipes the serialized text (it may hold a
 * password). With PASS_FD >= 0, that descriptor travels with the first bytes
 * (SCM_RIGHTS). 0, or -1 with *why. */
int jit_conn_send(struct jit_conn *c, struct json_object *req, long long deadline,
                  int pass_fd, const char **why);

/*
 * Reads one answer line by DEADLINE (jit_parse_answer). A wait that is INTERRUPTIBLE
 * ends at a signal with *why "cancelled". NULL with *why on any failure.
 */
struct json_object *jit_conn_read(struct jit_conn *c, long long deadline, int interruptible,
                                  const char **why);

/*
 * The answer in BUF[0..LEN): exactly one line ending in its only newline, strict UTF-8
 * JSON, an object with a boolean "ok" and a string "code". NULL ("malformed answer")
 * for anything else. Pure: the fuzz target (pam/tests/fuzz_answer.c).
 */
struct json_object *jit_parse_answer(const char *buf, size_t len);

/* The string J if it is one and holds no NUL, else NULL; and that of OBJ's KEY. */
const char *jit_str_of(struct json_object *j);
const char *jit_get_str(struct json_object *obj, const char *key);
int jit_answer_ok(struct json_object *ans);

/* Adds VAL (taking it) to object OBJ at KEY, or to array OBJ if KEY is NULL. 0 or -1. */
int jit_put(struct json_object *obj, const char *key, struct json_object *val);

#endif
