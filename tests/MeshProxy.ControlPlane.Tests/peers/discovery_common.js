// Loads the real discovery.proto (from the source tree, passed in MESHPROXY_PROTO_ROOT) for the grpc-js peers.
// Modules come from tests/peers/node_modules (NODE_PATH).
'use strict';
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const root = process.env.MESHPROXY_PROTO_ROOT;
const definition = protoLoader.loadSync(path.join(root, 'meshproxy', 'v1', 'discovery.proto'), {
  keepCase: true,
  longs: String,
  defaults: true,
  includeDirs: [root],
});
const ConfigDiscovery = grpc.loadPackageDefinition(definition).meshproxy.v1.ConfigDiscovery;

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

module.exports = { grpc, ConfigDiscovery, emit };
