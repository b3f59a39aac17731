// The hub of the peer: express-pouchdb serving in-memory PouchDB databases
// over CouchDB's HTTP API, as pouchdb-server does.
//
//   node server.js
//
// Listens on 127.0.0.1 at a port the system picks and prints one line of
// JSON, {"port": N}, once it accepts connections. Runs until killed.
'use strict';

const express = require('express');
const expressPouchDB = require('express-pouchdb');
const PouchDB = require('./pouch');

const MemoryPouchDB = PouchDB.defaults({ adapter: 'memory' });
const app = express();
app.use(
  '/',
  expressPouchDB(MemoryPouchDB, {
    mode: 'minimumForPouchDB',
    inMemoryConfig: true,
    logPath: require('path').join(require('os').tmpdir(), `pouchdb-peer-${process.pid}.log`),
  }),
);
const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
