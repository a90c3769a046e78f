// A real gRPC client (grpc-js) driving one scenario against the server under test.
// Usage: node echo_client.js <host:port> <scenario>
// Prints exactly one JSON line: {"scenario", "code", "details", "replies"}.
'use strict';
const { grpc, Echo } = require('./echo_common');

const [address, scenario] = process.argv.slice(2);
const client = new Echo(address, grpc.credentials.createInsecure());

function finish(code, details, replies) {
  process.stdout.write(JSON.stringify({ scenario, code, details, replies }) + '\n');
  client.close();
  process.exit(0);
}

function unary(request, options, metadata) {
  client.Unary(request, metadata || new grpc.Metadata(), options || {}, (err, reply) => {
    if (err) finish(err.code, err.details, []);
    else finish(0, '', [reply]);
  });
}

function collectStream(call) {
  const replies = [];
  call.on('data', (reply) => replies.push(reply));
  call.on('error', (err) => finish(err.code, err.details, replies));
  call.on('end', () => finish(0, '', replies));
}

const scenarios = {
  unary() {
    const metadata = new grpc.Metadata();
    metadata.set('x-test', 'meta-value');
    unary({ text: 'héllo wörld', payload: Buffer.alloc(10) }, {}, metadata);
  },
  server_stream() {
    collectStream(client.ServerStream({ text: 'tick', count: 5 }));
  },
  client_stream() {
    const call = client.ClientStream((err, reply) => {
      if (err) finish(err.code, err.details, []);
      else finish(0, '', [reply]);
    });
    for (const text of ['a', 'b', 'c', 'd']) call.write({ text });
    call.end();
  },
  bidi() {
    // Ping-pong: each message is sent only after the previous reply came back, which proves both
    // directions are open at once.
    const texts = ['one', 'two', 'three'];
    const replies = [];
    const call = client.Bidi();
    call.on('data', (reply) => {
      replies.push(reply);
      if (replies.length < texts.length) call.write({ text: texts[replies.length] });
      else call.end();
    });
    call.on('error', (err) => finish(err.code, err.details, replies));
    call.on('end', () => finish(0, '', replies));
    call.write({ text: texts[0] });
  },
  error() {
    unary({ text: 'x', fail_code: 9, fail_message: 'Überfall: 100% kaputt\n— ok? 日本' });
  },
  deadline() {
    // Warm up first (connection, server JIT): the deadline must run out while the handler runs,
    // not while the channel connects.
    client.Unary({ text: 'warm-up' }, (err) => {
      if (err) finish(err.code, `warm-up failed: ${err.details}`, []);
      else unary({ text: 'slow', delay_ms: 10000 }, { deadline: Date.now() + 1000 });
    });
  },
  oversize() {
    unary({ text: 'big', payload: Buffer.alloc(100 * 1024, 7) });
  },
};

const run = scenarios[scenario];
if (!run) {
  process.stderr.write(`unknown scenario ${scenario}\n`);
  process.exit(2);
}
setTimeout(() => finish(-1, 'client script timed out', []), 15000).unref();
run();
