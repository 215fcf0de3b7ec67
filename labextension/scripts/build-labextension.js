#!/usr/bin/env node
/*
 * Builds the extension into jupyterlab.outputDir with @jupyterlab/builder (webpack), against
 * JupyterLab's core metadata from the pinned @jupyterlab/core-meta dev dependency.
 *
 * This is what `jupyter-builder build .` does, without one of its checks: jupyter-builder
 * 1.3 demands Node.js >= 20.19 whatever the builder (the range is @rspack/core's), while
 * this webpack build runs on Debian 12's Node 18 as well as on newer ones.
 *
 * Usage: node scripts/build-labextension.js [--development] [--source-map]
 */
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const coreMeta = path.join(root, 'node_modules', '@jupyterlab', 'core-meta', 'core.package.json');
const builder = path.join(root, 'node_modules', '@jupyterlab', 'builder', 'lib', 'build-labextension.js');

for (const file of [coreMeta, builder]) {
  if (!fs.existsSync(file)) {
    console.error(`build-labextension: ${file} is missing: run \`jlpm install\` first`);
    process.exit(1);
  }
}

// The builder reads the core data from <core-path>/package.json; core-meta's own
// package.json is its npm manifest, so the data goes into a directory of its own.
const corePath = fs.mkdtempSync(path.join(os.tmpdir(), 'nbtasks-core-meta-'));
let status = 1;
try {
  fs.copyFileSync(coreMeta, path.join(corePath, 'package.json'));
  const args = [builder, '--core-path', corePath, ...process.argv.slice(2), root];
  const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
  if (result.error) {
    console.error(`build-labextension: ${result.error.message}`);
  }
  status = result.status === null ? 1 : result.status;
} finally {
  fs.rmSync(corePath, { recursive: true, force: true });
}
process.exit(status);
