// tunellama's JavaScript API, appended to the emscripten module with --post-js (wasm/tunellama.d.ts
// types it). The C functions come from wasm/tunellama_wasm.c through emscripten's cwrap; this file
// only turns them into a model object with an async, streaming generate().
Module['loadModel'] = function (bytes, options) {
  options = options || {};
  const c = {
    load: Module.cwrap('tl_load', 'number', ['string', 'number']),
    error: Module.cwrap('tl_error', 'string', []),
    start: Module.cwrap('tl_start', 'number',
      ['number', 'string', 'number', 'number', 'number', 'number', 'number', 'number', 'number']),
    next: Module.cwrap('tl_next', 'number', ['number']),
    lastToken: Module.cwrap('tl_last_token', 'number', ['number']),
    stop: Module.cwrap('tl_stop', null, ['number']),
    free: Module.cwrap('tl_free', null, ['number']),
    logits: Module.cwrap('tl_logits', 'number', ['number', 'string']),
    logitsPtr: Module.cwrap('tl_logits_ptr', 'number', ['number']),
    tokensPtr: Module.cwrap('tl_tokens_ptr', 'number', ['number']),
    nTokens: Module.cwrap('tl_n_tokens', 'number', ['number']),
  };
  const path = '/model-' + (Module['_tlModels'] = (Module['_tlModels'] || 0) + 1) + '.gguf';
  Module.FS.writeFile(path, bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes));
  const session = c.load(path, options.contextSize || 0);
  // llama.cpp read the file into its own buffers (no mmap): MEMFS's copy is not needed any more.
  Module.FS.unlink(path);
  if (!session) throw new Error('tunellama: ' + c.error());
  let live = true;
  let busy = false;
  const alive = () => { if (!live) throw new Error('tunellama: the model was freed'); };
  const utf8 = (ptr) => {
    let end = ptr;
    while (Module.HEAPU8[end] !== 0) end++;
    // Copied out of the heap: the bytes are valid UTF-8 (tunellama_wasm.c holds back incomplete
    // sequences), so a fatal decoder never throws here.
    return new TextDecoder('utf-8', { fatal: true }).decode(Module.HEAPU8.slice(ptr, end));
  };
  return {
    generate: async function (prompt, opts, onToken) {
      alive();
      if (busy) throw new Error('tunellama: a generation is already running');
      opts = opts || {};
      const pick = (v, d) => (v === undefined || v === null ? d : v);
      busy = true;
      try {
        const rc = c.start(session, prompt, pick(opts.maxTokens, 64), pick(opts.temperature, 0.8),
          pick(opts.topK, 40), pick(opts.topP, 0.95), pick(opts.minP, 0.05),
          pick(opts.repeatPenalty, 1.0), pick(opts.seed, 0) >>> 0);
        if (rc < 0) throw new Error('tunellama: ' + c.error());
        let text = '';
        const tokens = [];
        for (;;) {
          const ptr = c.next(session);
          if (!ptr) break;
          const piece = utf8(ptr);
          const token = c.lastToken(session);
          if (token >= 0) tokens.push(token);
          text += piece;
          if (onToken && (piece || token >= 0)) onToken(piece, token);
          // Yield to the event loop between tokens: the page repaints and stop() can run.
          await new Promise((r) => setTimeout(r, 0));
        }
        return { text: text, tokens: tokens, promptTokens: rc };
      } finally {
        busy = false;
      }
    },
    stop: function () { if (live) c.stop(session); },
    logits: function (prompt) {
      alive();
      const n = c.logits(session, prompt);
      if (n < 0) throw new Error('tunellama: ' + c.error());
      const lp = c.logitsPtr(session) >> 2;
      const tp = c.tokensPtr(session) >> 2;
      return {
        logits: Array.from(Module.HEAPF32.subarray(lp, lp + n)),
        tokens: Array.from(Module.HEAP32.subarray(tp, tp + c.nTokens(session))),
      };
    },
    free: function () { if (live) { live = false; c.free(session); } },
  };
};
Module['systemInfo'] = function () { return Module.ccall('tl_system_info', 'string', [], []); };
