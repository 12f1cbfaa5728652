#!/usr/bin/env node
// sqs-emulator.mjs - start fauxqs (an SQS emulator speaking the JSON protocol)
// bound to one address, loopback by default. tests/aws/aws-emulators.sh runs it.
//
//   node sqs-emulator.mjs <port> [host]
//     SQS_EMU_MODULES: folder whose node_modules/ holds fauxqs (the script's npm ci)
//
// fauxqs hard-codes listen({host: "0.0.0.0"}), so every net.Server.listen() in
// this process is forced onto `host` before fauxqs is loaded. fauxqs 2.4.1 also
// imports node:sqlite (Node >= 22.5), used only for its optional dataDir
// persistence; on Node 20 that import is stubbed so the in-memory emulator
// loads. QueueUrls come back as http://sqs.<region>.localhost:<port>/... and
// that host does not resolve: clients POST to the endpoint and treat the
// QueueUrl as an opaque id (as orderd does).
import net from 'node:net';
import path from 'node:path';
import { register } from 'node:module';
import { pathToFileURL } from 'node:url';

const [portArg, hostArg] = process.argv.slice(2);
const host = hostArg || '127.0.0.1';
const port = Number(portArg);
const modulesDir = process.env.SQS_EMU_MODULES || process.cwd();
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node sqs-emulator.mjs <port> [host]');
  process.exit(2);
}

const origListen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const a0 = args[0];
  if (a0 && typeof a0 === 'object' && !Array.isArray(a0) && !(a0 instanceof net.Server)) {
    args[0] = { ...a0, host };
  } else if (typeof a0 === 'number' || (typeof a0 === 'string' && /^\d+$/.test(a0))) {
    if (typeof args[1] === 'string') args[1] = host;
    else args.splice(1, 0, host);
  }
  return origListen.apply(this, args);
};

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 5)) {
  const hooks = `export async function resolve(spec, ctx, next) {
  if (spec === 'node:sqlite') return { shortCircuit: true, url: 'data:text/javascript,' +
    encodeURIComponent('export class DatabaseSync { constructor() { throw new Error("node:sqlite needs Node >= 22.5"); } }; export default { DatabaseSync };') };
  return next(spec, ctx);
}`;
  register('data:text/javascript,' + encodeURIComponent(hooks));
}

const entry = path.join(modulesDir, 'node_modules', 'fauxqs', 'dist', 'app.js');
const { startFauxqs } = await import(pathToFileURL(entry).href);
const srv = await startFauxqs({ port, logger: false,
                                defaultRegion: process.env.AWS_REGION || 'us-east-1' });
console.log(`fauxqs listening on http://${host}:${port} (pid ${process.pid})`);

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    const t = setTimeout(() => process.exit(0), 2000);
    t.unref();
    Promise.resolve(srv.stop()).finally(() => process.exit(0));
  });
}
