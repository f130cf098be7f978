/* aobc_pass.h: aobc-pass-v1 for C, in one header, with no libc.
 *
 * A pass defines its manifest and a run function, then exports them:
 *
 *     #include "aobc_pass.h"
 *     static const char MANIFEST[] = "{\"name\": \"my-pass\", \"reads\": [\"node.loc\"]}";
 *     static int run(const aobc_input *in, aobc_output *out) { ...; return 0; }
 *     AOBC_PASS(MANIFEST, run)
 *
 * run returns 0, or non-zero after aobc_fail(out, "why"). Memory comes from a bump allocator
 * that never frees: every call runs in a fresh instance, so the host discards it all after.
 * Build: `aobc pass build` (zig cc, wasm32-freestanding). See wasm_passes/ABI.md.
 */
#ifndef AOBC_PASS_H
#define AOBC_PASS_H

#include <stddef.h>
#include <stdint.h>

#define AOBC_EXPORT(name) __attribute__((export_name(name), visibility("default")))

/* --- memory -------------------------------------------------------------------------------- */

extern unsigned char __heap_base;
static uintptr_t aobc__top, aobc__end;

static void *aobc_alloc(size_t n) {
    if (!aobc__top) aobc__top = aobc__end = (uintptr_t)&__heap_base;
    uintptr_t p = (aobc__top + 7) & ~(uintptr_t)7;
    if (p + n > aobc__end) {
        size_t need = (p + n - aobc__end + 65535) / 65536;
        size_t pages = need < 16 ? 16 : need;
        if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) return 0;
        aobc__end += pages * 65536;
        if (aobc__end < p + n) return 0;
    }
    aobc__top = p + n;
    return (void *)p;
}

static void aobc_copy(void *dst, const void *src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--) *d++ = *s++;
}

static int aobc_eq(const char *a, size_t alen, const char *b) {
    size_t i = 0;
    for (; i < alen; i++)
        if (b[i] != a[i]) return 0;
    return b[i] == 0;
}

/* --- JSON values ----------------------------------------------------------------------------- */

typedef enum { AOBC_NULL, AOBC_BOOL, AOBC_NUMBER, AOBC_STRING, AOBC_ARRAY, AOBC_OBJECT } aobc_kind;

typedef struct aobc_value {
    aobc_kind kind;
    int boolean;
    const char *str; /* a string (decoded, not NUL-free) or a number's text */
    size_t len;
    struct aobc_value **items; /* array elements, or object values */
    const char **keys;         /* object keys, NUL-terminated */
    size_t count;
} aobc_value;

static aobc_value aobc__null = {AOBC_NULL, 0, 0, 0, 0, 0, 0};

typedef struct { const char *p, *end; int ok; } aobc__parser;

static void aobc__ws(aobc__parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t')) ps->p++;
}

static int aobc__hex(aobc__parser *ps, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        if (ps->p >= ps->end) return 0;
        char c = *ps->p++;
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

static char *aobc__string(aobc__parser *ps, size_t *len) {
    /* The decoded text is never longer than the quoted text. */
    const char *start = ++ps->p;
    size_t cap = 0;
    while (start + cap < ps->end && start[cap] != '"') cap += start[cap] == '\\' ? 2 : 1;
    char *out = aobc_alloc(cap + 1), *o = out;
    if (!out) { ps->ok = 0; return 0; }
    while (ps->p < ps->end && *ps->p != '"') {
        char c = *ps->p++;
        if (c != '\\') { *o++ = c; continue; }
        if (ps->p >= ps->end) break;
        c = *ps->p++;
        switch (c) {
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case 'r': *o++ = '\r'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'u': {
            unsigned cp, lo;
            if (!aobc__hex(ps, &cp)) { ps->ok = 0; return 0; }
            if (cp >= 0xD800 && cp < 0xDC00 && ps->p + 1 < ps->end && ps->p[0] == '\\' && ps->p[1] == 'u') {
                ps->p += 2;
                if (!aobc__hex(ps, &lo)) { ps->ok = 0; return 0; }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp < 0x80) *o++ = (char)cp;
            else if (cp < 0x800) { *o++ = (char)(0xC0 | cp >> 6); *o++ = (char)(0x80 | (cp & 63)); }
            else if (cp < 0x10000) { *o++ = (char)(0xE0 | cp >> 12); *o++ = (char)(0x80 | (cp >> 6 & 63)); *o++ = (char)(0x80 | (cp & 63)); }
            else { *o++ = (char)(0xF0 | cp >> 18); *o++ = (char)(0x80 | (cp >> 12 & 63)); *o++ = (char)(0x80 | (cp >> 6 & 63)); *o++ = (char)(0x80 | (cp & 63)); }
            break;
        }
        default: *o++ = c; /* \" \\ \/ */
        }
    }
    if (ps->p >= ps->end) { ps->ok = 0; return 0; }
    ps->p++;
    *o = 0;
    *len = (size_t)(o - out);
    return out;
}

static aobc_value *aobc__value(aobc__parser *ps, int depth);

static aobc_value *aobc__container(aobc__parser *ps, int depth, int object) {
    aobc_value *v = aobc_alloc(sizeof *v);
    if (!v) { ps->ok = 0; return 0; }
    *v = aobc__null;
    v->kind = object ? AOBC_OBJECT : AOBC_ARRAY;
    size_t cap = 8;
    v->items = aobc_alloc(cap * sizeof *v->items);
    v->keys = object ? aobc_alloc(cap * sizeof *v->keys) : 0;
    ps->p++;
    aobc__ws(ps);
    if (ps->p < ps->end && *ps->p == (object ? '}' : ']')) { ps->p++; return v; }
    for (;;) {
        const char *key = 0;
        if (object) {
            aobc__ws(ps);
            size_t klen;
            if (ps->p >= ps->end || *ps->p != '"' || !(key = aobc__string(ps, &klen))) { ps->ok = 0; return 0; }
            aobc__ws(ps);
            if (ps->p >= ps->end || *ps->p++ != ':') { ps->ok = 0; return 0; }
        }
        aobc_value *item = aobc__value(ps, depth + 1);
        if (!item) return 0;
        if (v->count == cap) { /* grow: copy into a twice larger block */
            aobc_value **items = aobc_alloc(2 * cap * sizeof *items);
            const char **keys = object ? aobc_alloc(2 * cap * sizeof *keys) : 0;
            if (!items || (object && !keys)) { ps->ok = 0; return 0; }
            aobc_copy(items, v->items, cap * sizeof *items);
            if (object) aobc_copy(keys, v->keys, cap * sizeof *keys);
            v->items = items, v->keys = keys, cap *= 2;
        }
        if (object) v->keys[v->count] = key;
        v->items[v->count++] = item;
        aobc__ws(ps);
        if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
        if (ps->p < ps->end && *ps->p == (object ? '}' : ']')) { ps->p++; return v; }
        ps->ok = 0;
        return 0;
    }
}

static aobc_value *aobc__value(aobc__parser *ps, int depth) {
    aobc__ws(ps);
    if (ps->p >= ps->end || depth > 256) { ps->ok = 0; return 0; }
    char c = *ps->p;
    if (c == '{' || c == '[') return aobc__container(ps, depth, c == '{');
    aobc_value *v = aobc_alloc(sizeof *v);
    if (!v) { ps->ok = 0; return 0; }
    *v = aobc__null;
    if (c == '"') {
        v->kind = AOBC_STRING;
        v->str = aobc__string(ps, &v->len);
        return v->str ? v : 0;
    }
    const char *start = ps->p;
    while (ps->p < ps->end && *ps->p != ',' && *ps->p != '}' && *ps->p != ']' && *ps->p != ' ' && *ps->p != '\n') ps->p++;
    size_t n = (size_t)(ps->p - start);
    if (aobc_eq(start, n, "null")) return v;
    if (aobc_eq(start, n, "true") || aobc_eq(start, n, "false")) {
        v->kind = AOBC_BOOL;
        v->boolean = start[0] == 't';
        return v;
    }
    if (n == 0) { ps->ok = 0; return 0; }
    v->kind = AOBC_NUMBER, v->str = start, v->len = n;
    return v;
}

/* v[key] for an object, or a null value. */
static const aobc_value *aobc_get(const aobc_value *v, const char *key) {
    if (v && v->kind == AOBC_OBJECT)
        for (size_t i = 0; i < v->count; i++) {
            const char *k = v->keys[i];
            size_t j = 0;
            while (k[j] && k[j] == key[j]) j++;
            if (!k[j] && !key[j]) return v->items[i];
        }
    return &aobc__null;
}

/* A string member's text (NUL-terminated), or 0. */
static const char *aobc_str(const aobc_value *v, const char *key) {
    const aobc_value *x = aobc_get(v, key);
    return x->kind == AOBC_STRING ? x->str : 0;
}

static int aobc_flag(const aobc_value *v, const char *key) {
    const aobc_value *x = aobc_get(v, key);
    return x->kind == AOBC_BOOL && x->boolean;
}

static int aobc_streq(const char *a, const char *b) {
    if (!a || !b) return a == b;
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}

/* --- writing ------------------------------------------------------------------------------------ */

typedef struct { char *data; size_t len, cap; int ok; } aobc_buf;

static void aobc_put(aobc_buf *b, const char *s, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n) cap *= 2;
        char *data = aobc_alloc(cap);
        if (!data) { b->ok = 0; return; }
        if (b->len) aobc_copy(data, b->data, b->len);
        b->data = data, b->cap = cap;
    }
    aobc_copy(b->data + b->len, s, n);
    b->len += n;
}

static void aobc_puts(aobc_buf *b, const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    aobc_put(b, s, n);
}

static void aobc_putu(aobc_buf *b, uint64_t v) {
    char tmp[24];
    int i = 24;
    do tmp[--i] = (char)('0' + v % 10), v /= 10; while (v);
    aobc_put(b, tmp + i, (size_t)(24 - i));
}

/* A JSON string literal. */
static void aobc_putq(aobc_buf *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    aobc_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { aobc_put(b, "\\", 1); aobc_put(b, s, 1); }
        else if (c < 0x20) { char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]}; aobc_put(b, e, 6); }
        else aobc_put(b, s, 1);
    }
    aobc_put(b, "\"", 1);
}

/* --- the output ---------------------------------------------------------------------------------- */

typedef struct { const aobc_value *options, *graph; } aobc_input;

typedef struct {
    aobc_buf patch, remarks, stats;
    const char *failure;
} aobc_output;

static void aobc_fail(aobc_output *out, const char *why) { out->failure = why; }

/* {"op": "remove", "path": "<prefix><index>"} */
static void aobc_remove_at(aobc_output *out, const char *prefix, size_t index) {
    aobc_buf *b = &out->patch;
    if (b->len) aobc_put(b, ",", 1);
    aobc_puts(b, "{\"op\":\"remove\",\"path\":\"");
    aobc_puts(b, prefix);
    aobc_putu(b, index);
    aobc_puts(b, "\"}");
}

/* kind: "passed", "missed" or "analysis"; nodes: n ids; loc may be 0. */
static void aobc_remark(aobc_output *out, const char *kind, const char *name, const char **nodes,
                        size_t n, const char *message, const char *loc) {
    aobc_buf *b = &out->remarks;
    if (b->len) aobc_put(b, ",", 1);
    aobc_puts(b, "{\"kind\":");
    aobc_putq(b, kind);
    aobc_puts(b, ",\"name\":");
    aobc_putq(b, name);
    aobc_puts(b, ",\"nodes\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) aobc_put(b, ",", 1);
        aobc_putq(b, nodes[i]);
    }
    aobc_puts(b, "],\"loc\":");
    if (loc) aobc_putq(b, loc); else aobc_puts(b, "null");
    aobc_puts(b, ",\"message\":");
    aobc_putq(b, message);
    aobc_puts(b, ",\"args\":{}}");
}

/* Set counter `stat` (call once per name). */
static void aobc_stat(aobc_output *out, const char *stat, uint64_t n) {
    aobc_buf *b = &out->stats;
    if (b->len) aobc_put(b, ",", 1);
    aobc_putq(b, stat);
    aobc_put(b, ":", 1);
    aobc_putu(b, n);
}

/* --- positions after removals: a Fenwick tree over live items ------------------------------ */

typedef struct { int32_t *tree; unsigned char *alive; size_t n; } aobc_ranks;

static void aobc__bump(aobc_ranks *r, size_t i, int32_t d) {
    for (size_t k = i + 1; k <= r->n; k += k & (~k + 1)) r->tree[k] += d;
}

static int aobc_ranks_init(aobc_ranks *r, size_t n) {
    r->n = n;
    r->tree = aobc_alloc((n + 1) * sizeof *r->tree);
    r->alive = aobc_alloc(n + 1);
    if (!r->tree || !r->alive) return 0;
    for (size_t i = 0; i <= n; i++) r->tree[i] = 0, r->alive[i] = 1;
    for (size_t i = 0; i < n; i++) aobc__bump(r, i, 1);
    return 1;
}

/* The current index of item i: how many live items precede it. */
static size_t aobc_rank(const aobc_ranks *r, size_t i) {
    int32_t sum = 0;
    for (size_t k = i; k > 0; k -= k & (~k + 1)) sum += r->tree[k];
    return (size_t)sum;
}

static void aobc_kill(aobc_ranks *r, size_t i) {
    if (r->alive[i]) r->alive[i] = 0, aobc__bump(r, i, -1);
}

/* --- the ABI ---------------------------------------------------------------------------------------- */

static uint64_t aobc__pack(int err, const char *p, size_t n) {
    return ((uint64_t)(err != 0) << 63) | ((uint64_t)(uintptr_t)p << 32) | (uint64_t)n;
}

static uint64_t aobc__error(const char *msg) {
    size_t n = 0;
    while (msg[n]) n++;
    return aobc__pack(1, msg, n);
}

static uint64_t aobc__call(const char *input, size_t len, int (*run)(const aobc_input *, aobc_output *)) {
    aobc__parser ps = {input, input + len, 1};
    aobc_value *doc = aobc__value(&ps, 0);
    if (!doc || !ps.ok) return aobc__error("the input is not JSON");
    const aobc_value *abi = aobc_get(doc, "abi");
    if (abi->kind != AOBC_NUMBER || !aobc_eq(abi->str, abi->len, "1"))
        return aobc__error("this plugin speaks aobc-pass-v1, but the input is for another ABI version");
    aobc_input in = {aobc_get(doc, "options"), aobc_get(doc, "graph")};
    aobc_output out = {{0, 0, 0, 1}, {0, 0, 0, 1}, {0, 0, 0, 1}, 0};
    if (run(&in, &out) != 0) return aobc__error(out.failure ? out.failure : "the pass failed");
    aobc_buf doc_out = {0, 0, 0, 1};
    aobc_puts(&doc_out, "{\"patch\":[");
    aobc_put(&doc_out, out.patch.data, out.patch.len);
    aobc_puts(&doc_out, "],\"remarks\":[");
    aobc_put(&doc_out, out.remarks.data, out.remarks.len);
    aobc_puts(&doc_out, "],\"stats\":{");
    aobc_put(&doc_out, out.stats.data, out.stats.len);
    aobc_puts(&doc_out, "}}");
    if (!doc_out.ok || !out.patch.ok || !out.remarks.ok || !out.stats.ok) return aobc__error("out of memory");
    return aobc__pack(0, doc_out.data, doc_out.len);
}

/* Export abi_version, alloc, run and meta for a pass. */
#define AOBC_PASS(MANIFEST, RUN)                                                               \
    AOBC_EXPORT("abi_version") int32_t aobc_abi_version(void) { return 1; }                   \
    AOBC_EXPORT("alloc") uint32_t aobc_alloc_export(uint32_t len) {                             \
        return (uint32_t)(uintptr_t)aobc_alloc(len ? len : 1);                                 \
    }                                                                                          \
    AOBC_EXPORT("run") uint64_t aobc_run(uint32_t ptr, uint32_t len) {                          \
        return aobc__call((const char *)(uintptr_t)ptr, len, RUN);                              \
    }                                                                                          \
    AOBC_EXPORT("meta") uint64_t aobc_meta(void) {                                              \
        return aobc__pack(0, MANIFEST, sizeof(MANIFEST) - 1);                                   \
    }

#endif
