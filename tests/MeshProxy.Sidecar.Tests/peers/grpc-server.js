// A real gRPC server (grpc-js) for the proxy tests. Prints {"port":N} once listening on 127.0.0.1.
const path = require('path');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const def = loader.loadSync(path.join(__dirname, 'echo.proto'));
const proto = grpc.loadPackageDefinition(def).meshtest;

const server = new grpc.Server();
server.addService(proto.Echo.service, {
  Unary: (call, cb) => cb(null, { text: `${call.request.text}|rid=${call.metadata.get('x-request-id')[0] || ''}` }),
  ServerStream: (call) => {
    for (let i = 0; i < call.request.count; i++) call.write({ text: `${call.request.text}-${i}` });
    call.end();
  },
  ClientStream: (call, cb) => {
    const parts = [];
    call.on('data', (m) => parts.push(m.text));
    call.on('end', () => cb(null, { text: parts.join('+'), count: parts.length }));
  },
  Bidi: (call) => {
    call.on('data', (m) => call.write({ text: `echo:${m.text}` }));
    call.on('end', () => call.end());
  },
  Fail: (call, cb) => {
    const trailer = new grpc.Metadata();
    trailer.set('x-charge-id', 'ch_42');
    cb({ code: grpc.status.NOT_FOUND, details: 'no such charge: ch_42 (ü, 100%)', metadata: trailer });
  },
});
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) { console.error(err); process.exit(1); }
  console.log(JSON.stringify({ port }));
});
