// The device of the peer: loads records into a local in-memory PouchDB, then
// replicates them to a remote database (through the weak-link proxy) until
// the remote holds all of them, starting the replication again after each
// failure, as an app does when the link comes back (replication resumes
// from its checkpoint).
//
//   node replicate.js DOCS.jsonl TARGET_URL CHECK_URL
//
// DOCS.jsonl: one JSON document per line, each with its _id. TARGET_URL: the
// remote database through the proxy. CHECK_URL: the same database reached
// directly, to count what arrived. Prints one line of JSON: docs, ms (from
// the start of replication to the last document arriving), attempts.
'use strict';

const fs = require('fs');
const http = require('http');
const PouchDB = require('./pouch');

const [docsPath, targetUrl, checkUrl] = process.argv.slice(2);
if (!docsPath || !targetUrl || !checkUrl) {
  process.stderr.write('usage: node replicate.js DOCS.jsonl TARGET_URL CHECK_URL\n');
  process.exit(2);
}

function docCount(url) {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          body += chunk;
        });
        res.on('end', () => {
          try {
            resolve(JSON.parse(body).doc_count || 0);
          } catch (e) {
            reject(e);
          }
        });
      })
      .on('error', reject);
  });
}

function createDb(url) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'PUT', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end();
  });
}

async function main() {
  const docs = fs
    .readFileSync(docsPath, 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line));
  const local = new PouchDB('device', { adapter: 'memory' });
  for (let i = 0; i < docs.length; i += 1000) {
    await local.bulkDocs(docs.slice(i, i + 1000));
  }
  await createDb(checkUrl);
  const started = Date.now();
  let attempts = 0;
  for (;;) {
    attempts += 1;
    try {
      await local.replicate.to(targetUrl, { batch_size: 100, retry: false });
    } catch (e) {
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    if ((await docCount(checkUrl)) >= docs.length) {
      break;
    }
    if (attempts > 10000) {
      throw new Error('replication did not complete');
    }
  }
  const ms = Date.now() - started;
  process.stdout.write(`${JSON.stringify({ docs: docs.length, ms, attempts })}\n`);
}

main().catch((e) => {
  process.stderr.write(`replicate.js: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
