// Types of tunellama's WebAssembly module (tunellama.js + tunellama.wasm), built by
// `cargo xtask cross --machine ci/machines/wasm32-emscripten.json`. Written by hand, kept small:
// the implementation is wasm/api.js over the C shim wasm/tunellama_wasm.c. See docs/wasm.md.

/** Sampling options of one generation. Defaults in brackets. */
export interface GenerateOptions {
  /** Most tokens to generate [64]; the context's free room caps it. */
  maxTokens?: number;
  /** 0 or less: greedy (argmax), no randomness [0.8]. */
  temperature?: number;
  /** Keep the k most likely tokens; 0 or less: off [40]. */
  topK?: number;
  /** Nucleus sampling; 1: off [0.95]. */
  topP?: number;
  /** Drop tokens below minP × the best one's probability; 0: off [0.05]. */
  minP?: number;
  /** Penalty on the last 64 tokens; 1: off [1.0]. */
  repeatPenalty?: number;
  /** Seed of the sampler: the same seed, prompt and options give the same tokens [0]. */
  seed?: number;
}

export interface GenerateResult {
  /** Everything streamed, concatenated: valid UTF-8 (invalid bytes became U+FFFD). */
  text: string;
  /** The generated token ids, in order (the end-of-generation token is not included). */
  tokens: number[];
  /** How many tokens the prompt had. */
  promptTokens: number;
}

export interface Model {
  /**
   * Generates from `prompt`, calling `onToken` once per token with the text that token completes
   * (possibly "" while a multi-byte character is incomplete; held-back bytes come with a later
   * call) and the token id (-1 for a final flush of held-back bytes). Resolves when the model ends
   * the text, `maxTokens` is reached, the context is full, or `stop()` was called.
   */
  generate(
    prompt: string,
    options?: GenerateOptions,
    onToken?: (text: string, token: number) => void,
  ): Promise<GenerateResult>;
  /** Ends the running generation after the current token. */
  stop(): void;
  /** The last position's logits of `prompt` and its tokens (what verification compares). */
  logits(prompt: string): { logits: number[]; tokens: number[] };
  /** Frees the model and its context; the object is unusable afterwards. */
  free(): void;
}

export interface TunellamaModule {
  /**
   * Loads a GGUF model from its bytes (written into the module's in-memory file system, read by
   * llama.cpp, then removed). `contextSize` 0 or absent: the model's trained context, at most 4096.
   */
  loadModel(bytes: Uint8Array | ArrayBuffer, options?: { contextSize?: number }): Model;
  /** llama.cpp's system info line, e.g. "CPU : WASM_SIMD = 1 | ...". */
  systemInfo(): string;
}

/** The module factory (emscripten MODULARIZE, EXPORT_NAME=createTunellama). */
declare function createTunellama(overrides?: object): Promise<TunellamaModule>;
export default createTunellama;
