// The PouchDB build both sides of the peer use: PouchDB 7 with the in-memory
// adapter, the HTTP adapter and replication, the same code CouchDB-style
// mobile apps ship.
'use strict';

const PouchDB = require('pouchdb-core')
  .plugin(require('pouchdb-adapter-memory'))
  .plugin(require('pouchdb-adapter-http'))
  .plugin(require('pouchdb-mapreduce'))
  .plugin(require('pouchdb-replication'));

module.exports = PouchDB;
