/*
 * fuzz_answer: random mutations of hostd answers fed to jit_parse_answer (the parser
 * pam_jit.so and jit_sudo.so share). Built with ASan and UBSan by pam/Makefile; any
 * crash, leak or sanitizer report fails, and so does an accepted answer that breaks the
 * parser's contract (one line, an object with a boolean "ok" and a string "code").
 * Usage: fuzz_answer ITERATIONS [SEED]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../sudo-plugin/jit_conn.h"

static const char *const SEEDS[] = {
    "{\"ok\":true,\"code\":\"ok\",\"message\":\"\"}\n",
    "{\"ok\":false,\"code\":\"no_grant\",\"message\":\"jit: logging in to h requires\"}\n",
    "{\"ok\":true,\"code\":\"ok\",\"message\":\"jit: active grants:\\njit:   x \\u00e9\"}\n",
    "{\"ok\":false,\"code\":\"not_found\",\"message\":\"no such user\",\"n\":[1,2.5,null]}\n",
    "{\"ok\":true,\"code\":\"ok\",\"decision\":\"allow\",\"gated\":true,\"grants\":[\"g1\"]}\n",
};
static const char TOKENS[] = "{}[]\":,\\\n\r\t 0123456789.eE+-truefalsnul\x00\xc3\xa9\xff\xed\xa0\x80";

static unsigned long long state;

static unsigned rnd(unsigned n)
{
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return n == 0 ? 0 : (unsigned)(state >> 33) % n;
}

/* One mutation of BUF (LEN bytes, capacity CAP): flip, insert, delete, splice. */
static size_t mutate(char *buf, size_t len, size_t cap)
{
    size_t at = len ? rnd((unsigned)len) : 0, n;

    switch (rnd(6)) {
    case 0:
        if (len)
            buf[at] ^= (char)(1u << rnd(8));
        break;
    case 1:
    case 2:
        if (len < cap) {
            memmove(buf + at + 1, buf + at, len - at);
            buf[at] = TOKENS[rnd(sizeof(TOKENS) - 1)];
            len++;
        }
        break;
    case 3:
        if (len) {
            memmove(buf + at, buf + at + 1, len - at - 1);
            len--;
        }
        break;
    case 4: /* repeat a slice: deep nesting and long strings */
        n = rnd(64);
        while (n-- > 0 && len < cap) {
            memmove(buf + at + 1, buf + at, len - at);
            len++;
        }
        break;
    default:
        if (len)
            buf[at] = (char)rnd(256);
    }
    return len;
}

/* 1 accepted, 0 rejected, -1 accepted although it breaks the contract. */
static int check(const char *buf, size_t len)
{
    struct json_object *ans = jit_parse_answer(buf, len);
    int bad = 0;

    if (ans != NULL) {
        bad = memchr(buf, '\n', len) != buf + len - 1 ||
              !json_object_is_type(ans, json_type_object) ||
              !json_object_is_type(json_object_object_get(ans, "ok"), json_type_boolean) ||
              jit_get_str(ans, "code") == NULL;
        json_object_put(ans);
    }
    return bad ? -1 : ans != NULL;
}

int main(int argc, char **argv)
{
    long iterations = argc > 1 ? atol(argv[1]) : 10000;
    size_t cap = JIT_LINE_MAX + 64, len;
    char *buf = malloc(cap);
    long accepted = 0;
    int rc = 0;

    state = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
    if (buf == NULL)
        return 2;
    for (long i = 0; i < iterations && rc == 0; i++) {
        const char *seed = SEEDS[rnd(sizeof(SEEDS) / sizeof(SEEDS[0]))];

        len = strlen(seed);
        memcpy(buf, seed, len);
        for (unsigned m = 1 + rnd(8); m > 0; m--)
            len = mutate(buf, len, cap);
        switch (check(buf, len)) {
        case -1:
            fprintf(stderr, "fuzz_answer: accepted a bad answer at iteration %ld\n", i);
            rc = 1;
            break;
        case 1:
            accepted++;
        }
    }
    /* the boundary: a line of exactly JIT_LINE_MAX bytes, and one over */
    memset(buf, ' ', cap);
    memcpy(buf, "{\"ok\":true,\"code\":\"ok\"}", 23);
    buf[JIT_LINE_MAX - 1] = '\n';
    if (check(buf, JIT_LINE_MAX) != 1 || check(buf, JIT_LINE_MAX + 1) != 0) {
        fprintf(stderr, "fuzz_answer: the 64 KiB bound is off\n");
        rc = 1;
    }
    free(buf);
    printf("fuzz_answer: %ld cases, %ld accepted, %s\n", iterations, accepted,
           rc ? "FAILED" : "no findings");
    return rc;
}
