// A real gRPC server (grpc-js) implementing echo.proto, for the client under test.
// Usage: node echo_server.js   -> prints {"port": N} once listening on 127.0.0.1, runs until killed.
'use strict';
const { grpc, Echo } = require('./echo_common');

function failure(request) {
  if (!request.fail_code) return null;
  return { code: request.fail_code, details: request.fail_message };
}

function metadataValue(call) {
  const values = call.metadata.get('x-test');
  return values.length ? String(values[0]) : '';
}

const server = new grpc.Server();
server.addService(Echo.service, {
  Unary(call, callback) {
    const fail = failure(call.request);
    if (fail) return callback(fail);
    const reply = {
      text: call.request.text,
      received: call.request.payload.length,
      metadata: metadataValue(call),
    };
    if (!call.request.delay_ms) return callback(null, reply);
    const timer = setTimeout(() => callback(null, reply), call.request.delay_ms);
    call.on('cancelled', () => clearTimeout(timer));
  },
  ServerStream(call) {
    for (let i = 0; i < call.request.count; i++) call.write({ text: call.request.text, index: i });
    call.end();
  },
  ClientStream(call, callback) {
    const texts = [];
    call.on('data', (request) => texts.push(request.text));
    call.on('end', () => callback(null, { text: texts.join(','), received: texts.length }));
  },
  Bidi(call) {
    let index = 0;
    call.on('data', (request) => {
      const fail = failure(request);
      if (fail) {
        call.emit('error', fail);
        return;
      }
      call.write({ text: request.text, index: index++, metadata: metadataValue(call) });
    });
    call.on('end', () => call.end());
  },
});

server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    process.stderr.write(`bind failed: ${err.message}\n`);
    process.exit(1);
  }
  process.stdout.write(JSON.stringify({ port }) + '\n');
});
