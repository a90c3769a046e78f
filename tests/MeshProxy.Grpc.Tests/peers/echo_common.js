// Loads echo.proto for the grpc-js peers. Modules come from tests/peers/node_modules (NODE_PATH).
'use strict';
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const definition = protoLoader.loadSync(path.join(__dirname, '..', 'protos', 'echo.proto'), {
  keepCase: true,
  longs: String,
  defaults: true,
});
const Echo = grpc.loadPackageDefinition(definition).meshproxy.test.v1.Echo;

module.exports = { grpc, Echo };
