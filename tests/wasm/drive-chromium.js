// Drives headless Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe: no
// port, no WebSocket): opens URL, waits for the page's window.tunellamaResult (or
// window.tunellamaError), takes a screenshot, closes the browser gracefully (so Cache Storage is
// written to the profile) and prints {"result": ...} or {"error": "..."} as JSON. Used by tests/wasm_browser.rs.
// usage: node drive-chromium.js CHROMIUM USER_DATA_DIR URL SCREENSHOT.png TIMEOUT_MS
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const [chromium, userDataDir, url, screenshot, timeoutMs] = process.argv.slice(2);

const browser = spawn(chromium, [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--no-default-browser-check', '--disable-extensions', '--remote-debugging-pipe',
  `--user-data-dir=${userDataDir}`, '--window-size=1000,900', 'about:blank',
], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
let stderr = '';
browser.stderr.on('data', (d) => { stderr += d; });
const toBrowser = browser.stdio[3];
const fromBrowser = browser.stdio[4];

let nextId = 1;
const pending = new Map();
let buffered = Buffer.alloc(0);
fromBrowser.on('data', (chunk) => {
  buffered = Buffer.concat([buffered, chunk]);
  let nul;
  while ((nul = buffered.indexOf(0)) >= 0) {
    const msg = JSON.parse(buffered.subarray(0, nul).toString('utf8'));
    buffered = buffered.subarray(nul + 1);
    if (msg.id && pending.has(msg.id)) {
      const { resolve, reject } = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) reject(new Error(JSON.stringify(msg.error))); else resolve(msg.result);
    } else if (msg.method === 'Runtime.exceptionThrown') {
      process.stderr.write('page exception: ' + JSON.stringify(msg.params.exceptionDetails) + '\n');
    } else if (msg.method === 'Runtime.consoleAPICalled') {
      process.stderr.write('page console: ' + msg.params.args.map((a) => a.value).join(' ') + '\n');
    }
  }
});
function send(method, params, sessionId) {
  const id = nextId++;
  const msg = { id, method, params: params || {} };
  if (sessionId) msg.sessionId = sessionId;
  toBrowser.write(JSON.stringify(msg) + '\0');
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
  await send('Runtime.enable', {}, sessionId);
  await send('Page.enable', {}, sessionId);
  await send('Page.navigate', { url }, sessionId);
  const deadline = Date.now() + Number(timeoutMs);
  let outcome = null;
  while (Date.now() < deadline) {
    const r = await send('Runtime.evaluate', {
      expression: 'JSON.stringify({result: window.tunellamaResult || null, error: window.tunellamaError || null})',
      returnByValue: true,
    }, sessionId);
    const v = JSON.parse(r.result.value || '{}');
    if (v.result || v.error) { outcome = v; break; }
    await sleep(200);
  }
  const shot = await send('Page.captureScreenshot', { format: 'png' }, sessionId);
  fs.writeFileSync(screenshot, Buffer.from(shot.data, 'base64'));
  await send('Browser.close').catch(() => {});
  await new Promise((r) => (browser.exitCode !== null ? r() : browser.on('exit', r)));
  if (!outcome) throw new Error(`no result from the page within ${timeoutMs} ms`);
  // {"result": ...} or {"error": "..."}: the page's own error is an outcome the test judges.
  process.stdout.write(JSON.stringify(outcome.error ? { error: outcome.error } : { result: outcome.result }) + '\n');
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + '\n--- chromium stderr ---\n' + stderr.slice(-4000) + '\n');
  try { browser.kill(); } catch (_) {}
  process.exit(1);
});
