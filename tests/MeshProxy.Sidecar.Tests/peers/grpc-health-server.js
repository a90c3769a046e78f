// A real gRPC health server (grpc-js) standing in for an app whose kubelet probes are grpc probes.
// Listens on 127.0.0.1 (the port in argv[2], or any) and prints {"port":N}; then one line per Check:
// {"check":service,"deadlineMs":time left until the caller's deadline (null without one),"userAgent":...}. What it answers depends on the service asked about:
//   ""                    SERVING (the server as a whole)
//   "billing.v1.Billing"  NOT_SERVING
//   "warming"             UNKNOWN
//   "hang"                nothing, ever (the caller's deadline must end the call)
//   anything else         status NOT_FOUND, as grpc's own health servers answer an unknown service
const path = require('path');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

// defaults: an empty service (proto3 leaves it off the wire) reads as "", not undefined.
const def = loader.loadSync(path.join(__dirname, 'health.proto'), { defaults: true });
const health = grpc.loadPackageDefinition(def).grpc.health.v1;

const statuses = { '': 'SERVING', 'billing.v1.Billing': 'NOT_SERVING', warming: 'UNKNOWN' };

const server = new grpc.Server();
server.addService(health.Health.service, {
  Check: (call, cb) => {
    const service = call.request.service;
    const deadline = call.getDeadline(); // from grpc-timeout, which grpc-js keeps out of the metadata
    console.log(JSON.stringify({
      check: service,
      deadlineMs: Number.isFinite(+deadline) ? +deadline - Date.now() : null,
      userAgent: call.metadata.get('user-agent')[0] || null,
    }));
    if (service === 'hang') return; // never answered
    if (service in statuses) return cb(null, { status: statuses[service] });
    cb({ code: grpc.status.NOT_FOUND, details: `unknown service ${service}` });
  },
});
server.bindAsync(`127.0.0.1:${process.argv[2] || 0}`, grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) { console.error(err); process.exit(1); }
  console.log(JSON.stringify({ port }));
});
