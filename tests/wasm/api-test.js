// The JavaScript API under node (tests/wasm_api.rs): load from bytes, streaming generate with the
// usual sampling options, reproducibility by seed, stop, free, and the UTF-8 hold-back of the C
// shim. Prints one JSON object of observations; the Rust test asserts on it.
// usage: node --no-experimental-fetch api-test.js MODULE_JS MODEL
'use strict';
const fs = require('fs');
const [moduleJs, modelPath] = process.argv.slice(2);

async function main() {
  const M = await require(moduleJs)();
  const out = { systemInfo: M.systemInfo() };
  const model = M.loadModel(new Uint8Array(fs.readFileSync(modelPath)));
  const prompt = 'The quick brown fox';

  // Streaming: one callback per token; the pieces concatenate to the text.
  const pieces = [];
  const ids = [];
  const sampled = await model.generate(prompt,
    { maxTokens: 24, temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1.1, seed: 7 },
    (text, token) => { pieces.push(text); if (token >= 0) ids.push(token); });
  out.sampled = sampled;
  out.streamedText = pieces.join('');
  out.streamedTokens = ids;
  out.callbacks = pieces.length;
  out.sampledAgain = (await model.generate(prompt,
    { maxTokens: 24, temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1.1, seed: 7 })).tokens;
  out.otherSeed = (await model.generate(prompt,
    { maxTokens: 24, temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1.1, seed: 8 })).tokens;
  out.greedy = (await model.generate(prompt, { maxTokens: 12, temperature: 0 })).tokens;
  out.greedyAgain = (await model.generate(prompt, { maxTokens: 12, temperature: 0, seed: 99 })).tokens;
  // The greedy first token is the argmax of the prompt's last logits.
  const l = model.logits(prompt).logits;
  out.argmax = l.indexOf(Math.max(...l));

  // stop() from the callback: the generation ends after the current token.
  let n = 0;
  const stopped = await model.generate(prompt, { maxTokens: 40, temperature: 0.8, seed: 3 },
    (text, token) => { if (token >= 0 && ++n === 3) model.stop(); });
  out.stoppedTokens = stopped.tokens.length;

  // A second generate while one runs is refused.
  const first = model.generate(prompt, { maxTokens: 4, temperature: 0 });
  out.concurrentRefused = await model.generate(prompt, {}).then(() => false, () => true);
  await first;

  model.free();
  out.afterFreeRefused = await model.generate(prompt, {}).then(() => false, (e) => String(e.message));

  // The UTF-8 filter: bytes fed in pieces, as tokens deliver them.
  const filter = (bytes, final) => {
    const p = M.ccall('tl_utf8_filter', 'number', ['array', 'number', 'number'],
      [bytes, bytes.length, final ? 1 : 0]);
    let e = p;
    while (M.HEAPU8[e] !== 0) e++;
    return new TextDecoder('utf-8', { fatal: true }).decode(M.HEAPU8.slice(p, e));
  };
  out.utf8 = [
    filter([0xC3], false), filter([0xA9], false), // é split in two
    filter([0xE2, 0x82], false), filter([0xAC, 0x41], false), // € split, then A
    filter([0xF0, 0x9F], false), filter([0x98], false), filter([0x80], false), // 😀 in three
    filter([0xFF, 0x42], false), // never valid: U+FFFD
    filter([0xE0, 0x80], false), // overlong lead/continuation: two U+FFFD
    filter([0xC3], false), filter([], true), // a cut sequence at the end: U+FFFD
  ];
  process.stdout.write(JSON.stringify(out) + '\n');
}
main().catch((e) => { console.error(e && e.stack || String(e)); process.exit(1); });
