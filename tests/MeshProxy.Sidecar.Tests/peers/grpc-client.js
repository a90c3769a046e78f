// A real gRPC client (grpc-js): every call kind against <target>, with :authority <authority>.
// Prints one JSON line with what came back, then exits.
const path = require('path');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const [target, authority] = process.argv.slice(2);
const def = loader.loadSync(path.join(__dirname, 'echo.proto'));
const proto = grpc.loadPackageDefinition(def).meshtest;
const client = new proto.Echo(target, grpc.credentials.createInsecure(), { 'grpc.default_authority': authority });
const deadline = () => new Date(Date.now() + 10000);

const unary = (method, msg) => new Promise((resolve) => {
  client[method](msg, { deadline: deadline() }, (err, res) => resolve(err
    ? { code: err.code, details: err.details, trailer: (err.metadata && err.metadata.get('x-charge-id')[0]) || null }
    : { text: res.text, count: res.count }));
});

const serverStream = () => new Promise((resolve) => {
  const got = [];
  const call = client.ServerStream({ text: 'tick', count: 5 }, { deadline: deadline() });
  call.on('data', (m) => got.push(m.text));
  call.on('error', (e) => resolve({ error: e.message }));
  call.on('end', () => resolve(got));
});

const clientStream = () => new Promise((resolve) => {
  const call = client.ClientStream({ deadline: deadline() }, (err, res) => resolve(err ? { error: err.message } : { text: res.text, count: res.count }));
  ['a', 'b', 'c'].forEach((t) => call.write({ text: t }));
  call.end();
});

const bidi = () => new Promise((resolve) => {
  const got = [];
  const call = client.Bidi({ deadline: deadline() });
  call.on('data', (m) => {
    got.push(m.text);
    if (got.length < 3) call.write({ text: `m${got.length}` }); else call.end();
  });
  call.on('error', (e) => resolve({ error: e.message }));
  call.on('end', () => resolve(got));
  call.write({ text: 'm0' });
});

(async () => {
  const result = {
    unary: await unary('Unary', { text: 'hi' }),
    serverStream: await serverStream(),
    clientStream: await clientStream(),
    bidi: await bidi(),
    fail: await unary('Fail', { text: 'x' }),
  };
  console.log(JSON.stringify(result));
  client.close();
})();
