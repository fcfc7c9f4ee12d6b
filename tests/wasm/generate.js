// One generation with the JavaScript API under node, printed as JSON: the tokens the browser test
// (tests/wasm_browser.rs) expects the page to produce for the same prompt and options.
// usage: node --no-experimental-fetch generate.js MODULE_JS MODEL PROMPT OPTIONS_JSON
'use strict';
const fs = require('fs');
const [moduleJs, modelPath, prompt, options] = process.argv.slice(2);
require(moduleJs)().then(async (M) => {
  const model = M.loadModel(fs.readFileSync(modelPath));
  const r = await model.generate(prompt, JSON.parse(options));
  model.free();
  process.stdout.write(JSON.stringify(r) + '\n');
}).catch((e) => { console.error(e && e.stack || String(e)); process.exit(1); });
