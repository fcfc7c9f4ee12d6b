/* tunellama's WebAssembly shim over llama.cpp's C API (built by `xtask/src/wasm.rs` with emcc).
 * Every function here is exported (EXPORTED_FUNCTIONS) and called from JavaScript through
 * emscripten's cwrap/ccall; wasm/api.js (appended with --post-js) wraps them into the small API
 * typed in wasm/tunellama.d.ts. Single thread: no -pthread in this first version. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <emscripten/emscripten.h>
#include "llama.h"

static char g_error[512];

static void set_error(const char *msg) {
    snprintf(g_error, sizeof g_error, "%s", msg);
}

static void quiet_log(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

/* --- UTF-8: emit only complete, valid sequences; hold back an incomplete tail (at most 3
 * bytes) until the next token completes it; replace invalid bytes with U+FFFD. */
struct utf8_state { unsigned char held[4]; int n_held; };

/* Length of the sequence a lead byte starts, 0 for a byte that cannot start one. */
static int utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

/* Whether byte `i` (1-based) of a sequence led by `lead` is a valid continuation (RFC 3629
 * table: no overlongs, no surrogates, nothing above U+10FFFF). */
static int utf8_cont_ok(unsigned char lead, int i, unsigned char c) {
    if (i == 1) {
        if (lead == 0xE0) return c >= 0xA0 && c <= 0xBF;
        if (lead == 0xED) return c >= 0x80 && c <= 0x9F;
        if (lead == 0xF0) return c >= 0x90 && c <= 0xBF;
        if (lead == 0xF4) return c >= 0x80 && c <= 0x8F;
    }
    return c >= 0x80 && c <= 0xBF;
}

/* Appends bytes to `st`, writes the valid text that is complete into `out` (capacity >= 3*(n+4)+1,
 * NUL-terminated) and returns its length. `final` flushes a held tail as U+FFFD. */
static int utf8_take(struct utf8_state *st, const unsigned char *in, int n, int final, char *out) {
    unsigned char buf[4 + 256];
    int len = 0, o = 0;
    memcpy(buf, st->held, (size_t)st->n_held);
    len = st->n_held;
    if (n > 256) n = 256;
    memcpy(buf + len, in, (size_t)n);
    len += n;
    st->n_held = 0;
    int i = 0;
    while (i < len) {
        int need = utf8_len(buf[i]);
        if (need == 0) { memcpy(out + o, "\xEF\xBF\xBD", 3); o += 3; i++; continue; }
        int k = 1;
        while (k < need && i + k < len && utf8_cont_ok(buf[i], k, buf[i + k])) k++;
        if (k == need) { memcpy(out + o, buf + i, (size_t)need); o += need; i += need; continue; }
        if (i + k == len && !final) { /* incomplete so far, but valid: wait for more */
            memcpy(st->held, buf + i, (size_t)k);
            st->n_held = k;
            break;
        }
        memcpy(out + o, "\xEF\xBF\xBD", 3); o += 3; i += k; /* invalid or cut: one U+FFFD */
    }
    out[o] = 0;
    return o;
}

/* A test hook for the filter alone (tests/wasm_api.rs feeds split sequences through it). */
static struct utf8_state g_test_utf8;
static char g_test_out[3 * 260 + 1];
EMSCRIPTEN_KEEPALIVE const char *tl_utf8_filter(const unsigned char *in, int n, int final) {
    utf8_take(&g_test_utf8, in, n, final, g_test_out);
    return g_test_out;
}

struct tl_session {
    struct llama_model *model;
    struct llama_context *ctx;
    const struct llama_vocab *vocab;
    struct llama_sampler *smpl;
    int n_ctx;
    int n_past;
    int remaining;
    int stopped;
    int finished;
    int last_token;
    struct utf8_state utf8;
    char out[3 * 260 + 1];
    float *logits;
    int n_vocab;
    llama_token *tokens;
    int n_tokens;
};

EMSCRIPTEN_KEEPALIVE const char *tl_error(void) { return g_error; }

EMSCRIPTEN_KEEPALIVE const char *tl_system_info(void) { return llama_print_system_info(); }

/* Loads a GGUF file (written into MEMFS by the caller). n_ctx 0: the model's trained context,
 * at most 4096 (as the runtime and the verification program do). */
EMSCRIPTEN_KEEPALIVE struct tl_session *tl_load(const char *path, int n_ctx) {
    static int initialised = 0;
    if (!initialised) {
        llama_log_set(quiet_log, NULL);
        llama_backend_init();
        initialised = 1;
    }
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    mp.load_mode = LLAMA_LOAD_MODE_NONE; /* read into llama.cpp's buffers: MEMFS has no mmap worth using */
    struct llama_model *model = llama_model_load_from_file(path, mp);
    if (!model) { set_error("llama.cpp could not load the model"); return NULL; }
    if (n_ctx <= 0) {
        n_ctx = llama_model_n_ctx_train(model);
        if (n_ctx <= 0 || n_ctx > 4096) n_ctx = 4096;
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_batch = n_ctx < 512 ? (uint32_t)n_ctx : 512;
    cp.n_ubatch = cp.n_batch;
    cp.n_threads = cp.n_threads_batch = 1;
    cp.no_perf = 1;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) { llama_model_free(model); set_error("llama.cpp could not create a context"); return NULL; }
    struct tl_session *s = calloc(1, sizeof *s);
    s->model = model;
    s->ctx = ctx;
    s->vocab = llama_model_get_vocab(model);
    s->n_ctx = n_ctx;
    s->n_vocab = llama_vocab_n_tokens(s->vocab);
    s->finished = 1;
    return s;
}

static int tokenize(struct tl_session *s, const char *prompt) {
    int len = (int)strlen(prompt);
    int cap = len + 2;
    free(s->tokens);
    s->tokens = malloc(sizeof(llama_token) * (size_t)cap);
    int n = llama_tokenize(s->vocab, prompt, len, s->tokens, cap, 1, 1);
    if (n < 0 && n != INT32_MIN) {
        cap = -n;
        s->tokens = realloc(s->tokens, sizeof(llama_token) * (size_t)cap);
        n = llama_tokenize(s->vocab, prompt, len, s->tokens, cap, 1, 1);
    }
    s->n_tokens = n > 0 ? n : 0;
    return n;
}

/* Clears the context and decodes the prompt; the last position's logits are kept. */
static int prefill(struct tl_session *s, const char *prompt) {
    llama_memory_clear(llama_get_memory(s->ctx), 1);
    s->n_past = 0;
    int n = tokenize(s, prompt);
    int n_batch = s->n_ctx < 512 ? s->n_ctx : 512;
    if (n <= 0 || n > n_batch || n >= s->n_ctx) { set_error("the prompt is empty or longer than one batch"); return -1; }
    struct llama_batch b = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        b.token[i] = s->tokens[i];
        b.pos[i] = i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = i == n - 1;
    }
    b.n_tokens = n;
    int rc = llama_decode(s->ctx, b);
    llama_batch_free(b);
    if (rc != 0) { set_error("llama_decode failed on the prompt"); return -1; }
    s->n_past = n;
    return n;
}

/* The last-position logits of `prompt` (the verification computation); returns n_vocab. */
EMSCRIPTEN_KEEPALIVE int tl_logits(struct tl_session *s, const char *prompt) {
    if (prefill(s, prompt) < 0) return -1;
    const float *lg = llama_get_logits_ith(s->ctx, -1);
    if (!lg) { set_error("no logits"); return -1; }
    free(s->logits);
    s->logits = malloc(sizeof(float) * (size_t)s->n_vocab);
    memcpy(s->logits, lg, sizeof(float) * (size_t)s->n_vocab);
    s->finished = 1;
    return s->n_vocab;
}
EMSCRIPTEN_KEEPALIVE float *tl_logits_ptr(struct tl_session *s) { return s->logits; }
EMSCRIPTEN_KEEPALIVE llama_token *tl_tokens_ptr(struct tl_session *s) { return s->tokens; }
EMSCRIPTEN_KEEPALIVE int tl_n_tokens(struct tl_session *s) { return s->n_tokens; }

/* Starts a generation: temperature <= 0 is greedy; top_k <= 0, top_p >= 1, min_p <= 0 and
 * repeat_penalty == 1 switch those samplers off; seed makes sampling reproducible. */
EMSCRIPTEN_KEEPALIVE int tl_start(struct tl_session *s, const char *prompt, int max_tokens,
                                  float temperature, int top_k, float top_p, float min_p,
                                  float repeat_penalty, uint32_t seed) {
    if (s->smpl) { llama_sampler_free(s->smpl); s->smpl = NULL; }
    s->utf8.n_held = 0;
    s->stopped = 0;
    s->finished = 0;
    s->last_token = -1;
    if (prefill(s, prompt) < 0) { s->finished = 1; return -1; }
    struct llama_sampler_chain_params sp = llama_sampler_chain_default_params();
    sp.no_perf = 1;
    s->smpl = llama_sampler_chain_init(sp);
    if (repeat_penalty != 1.0f)
        llama_sampler_chain_add(s->smpl, llama_sampler_init_penalties(s->n_vocab, 64, repeat_penalty, 0.0f, 0.0f));
    if (temperature <= 0.0f) {
        llama_sampler_chain_add(s->smpl, llama_sampler_init_greedy());
    } else {
        if (top_k > 0) llama_sampler_chain_add(s->smpl, llama_sampler_init_top_k(top_k));
        if (top_p < 1.0f) llama_sampler_chain_add(s->smpl, llama_sampler_init_top_p(top_p, 1));
        if (min_p > 0.0f) llama_sampler_chain_add(s->smpl, llama_sampler_init_min_p(min_p, 1));
        llama_sampler_chain_add(s->smpl, llama_sampler_init_temp(temperature));
        llama_sampler_chain_add(s->smpl, llama_sampler_init_dist(seed));
    }
    int room = s->n_ctx - s->n_past;
    s->remaining = max_tokens < room ? max_tokens : room;
    return s->n_tokens;
}

/* One token: returns its text as far as it completes valid UTF-8 (possibly ""), or NULL when the
 * generation has ended (end of generation token, max_tokens, context full, tl_stop). */
EMSCRIPTEN_KEEPALIVE const char *tl_next(struct tl_session *s) {
    if (s->finished) return NULL;
    if (s->stopped || s->remaining <= 0) {
        s->finished = 1;
        if (s->utf8.n_held) { utf8_take(&s->utf8, NULL, 0, 1, s->out); s->last_token = -1; return s->out; }
        return NULL;
    }
    llama_token t = llama_sampler_sample(s->smpl, s->ctx, -1);
    s->last_token = t;
    if (llama_vocab_is_eog(s->vocab, t)) { s->remaining = 0; return tl_next(s); }
    char piece[256];
    int n = llama_token_to_piece(s->vocab, t, piece, sizeof piece, 0, 0);
    if (n < 0) n = 0;
    utf8_take(&s->utf8, (const unsigned char *)piece, n, 0, s->out);
    s->remaining--;
    if (s->remaining > 0) {
        struct llama_batch b = llama_batch_get_one(&t, 1);
        if (llama_decode(s->ctx, b) != 0) { set_error("llama_decode failed"); s->remaining = 0; }
        s->n_past++;
    }
    return s->out;
}

/* The token tl_next last sampled (-1 for a flush of held bytes). */
EMSCRIPTEN_KEEPALIVE int tl_last_token(struct tl_session *s) { return s->last_token; }

EMSCRIPTEN_KEEPALIVE void tl_stop(struct tl_session *s) { s->stopped = 1; }

EMSCRIPTEN_KEEPALIVE void tl_free(struct tl_session *s) {
    if (!s) return;
    if (s->smpl) llama_sampler_free(s->smpl);
    llama_free(s->ctx);
    llama_model_free(s->model);
    free(s->logits);
    free(s->tokens);
    free(s);
}
