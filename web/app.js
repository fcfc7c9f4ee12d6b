// tunellama's page logic (docs/wasm.md): fetch model.json (URL, size, sha256), take the model from
// Cache Storage or download it with a progress bar, verify its sha256 with SubtleCrypto before
// use (a stored copy too), load it into the wasm module and stream a generation into the page.
// `?autorun=1` generates at once and publishes the outcome as JSON in #result and as
// window.tunellamaResult (the browser test reads it); seed, temperature, maxTokens, prompt and the
// expected sha256 can be given in the query string.
'use strict';
const CACHE = 'tunellama-models-v1';
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const status = (text) => { $('status').textContent = text; };

function hex(buf) {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
}

async function sha256(bytes) {
  return hex(await crypto.subtle.digest('SHA-256', bytes));
}

// Streams the response body, updating the progress bar.
async function download(url, size) {
  const res = await fetch(url, { cache: 'no-store' });
  if (!res.ok) throw new Error(`download of ${url} failed: HTTP ${res.status}`);
  const total = Number(res.headers.get('Content-Length')) || size;
  const reader = res.body.getReader();
  const chunks = [];
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    got += value.length;
    $('progress').value = total ? got / total : 0;
    status(`downloading model: ${(got / 1048576).toFixed(1)} of ${(total / 1048576).toFixed(1)} MiB`);
  }
  const bytes = new Uint8Array(got);
  let at = 0;
  for (const c of chunks) { bytes.set(c, at); at += c.length; }
  return bytes;
}

// The model's bytes, verified: from Cache Storage when a verified copy is there, else downloaded
// (and stored only after it verified).
async function model(info) {
  const cache = await caches.open(CACHE);
  // The key names the content: another model (another sha256) is another entry.
  const key = new URL(info.url + '?sha256=' + info.sha256, location.href).href;
  const stored = await cache.match(key);
  if (stored) {
    const bytes = new Uint8Array(await stored.arrayBuffer());
    if (await sha256(bytes) === info.sha256) {
      $('progress').value = 1;
      return { bytes, source: 'cache-storage' };
    }
    await cache.delete(key); // damaged: fetch it again
  }
  const bytes = await download(info.url, info.size);
  status('verifying sha256…');
  const got = await sha256(bytes);
  if (got !== info.sha256) {
    throw new Error(`model sha256 mismatch: expected ${info.sha256}, got ${got}; not used, not stored`);
  }
  await cache.put(key, new Response(bytes, { headers: { 'Content-Type': 'application/octet-stream' } }));
  return { bytes, source: 'network' };
}

function options() {
  const num = (k, d) => (params.has(k) ? Number(params.get(k)) : d);
  return {
    maxTokens: num('maxTokens', 32),
    temperature: num('temperature', 0.8),
    topK: num('topK', 40),
    topP: num('topP', 0.95),
    minP: num('minP', 0.05),
    repeatPenalty: num('repeatPenalty', 1.0),
    seed: num('seed', 42),
  };
}

async function main() {
  const info = await (await fetch('model.json', { cache: 'no-store' })).json();
  // An application that knows its model pins the hash itself (`?sha256=`) instead of trusting
  // the server's model.json.
  if (params.has('sha256')) info.sha256 = params.get('sha256').toLowerCase();
  const [tl, m] = await Promise.all([createTunellama(), model(info)]);
  status(`model ${info.name} (${m.source}, sha256 ${info.sha256.slice(0, 12)}…): loading into wasm`);
  const llm = tl.loadModel(m.bytes);
  status(`ready: model ${info.name} from ${m.source === 'network' ? 'the network' : 'browser storage'}; ${tl.systemInfo()}`);
  if (params.has('prompt')) $('prompt').value = params.get('prompt');
  const run = async () => {
    $('generate').disabled = true;
    $('stop').disabled = false;
    $('output').textContent = '';
    const opts = options();
    const r = await llm.generate($('prompt').value, opts, (text) => {
      $('output').textContent += text;
    });
    $('generate').disabled = false;
    $('stop').disabled = true;
    const result = {
      tokens: r.tokens, text: r.text, options: opts, modelSource: m.source,
      sha256: info.sha256, systemInfo: tl.systemInfo(),
    };
    $('result').textContent = JSON.stringify(result);
    window.tunellamaResult = result;
  };
  $('generate').onclick = () => run().catch(fail);
  $('stop').onclick = () => llm.stop();
  $('generate').disabled = false;
  if (params.get('autorun') === '1') await run();
}

function fail(e) {
  status('error: ' + (e && e.message || e));
  window.tunellamaError = String(e && e.stack || e);
}

$('forget').onclick = async () => { await caches.delete(CACHE); status('stored model removed'); };
main().catch(fail);
