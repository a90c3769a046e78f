// A sidecar as grpc-js sees it: streams snapshots from the control plane under test.
// Usage: node discovery_client.js [--token <bearer token>] <host:port> <workload> <namespace> [label=value...]
// stdout: one JSON line per event: {"type":"snapshot",version,nonce,resources:[...]} | {"type":"error",code,details} | {"type":"end"}
// stdin: one command per line: "ack" (ACK the last snapshot), "nack <reason>", "end" (half-close).
'use strict';
const readline = require('readline');
const { grpc, ConfigDiscovery, emit } = require('./discovery_common');

let args = process.argv.slice(2);
const metadata = new grpc.Metadata();
if (args[0] === '--token') {
  // As a sidecar sends its service-account token on the config stream.
  metadata.add('authorization', `Bearer ${args[1]}`);
  args = args.slice(2);
}
const [address, workload, namespace, ...labelArgs] = args;
const labels = Object.fromEntries(labelArgs.map((l) => l.split('=')));
const client = new ConfigDiscovery(address, grpc.credentials.createInsecure());
const call = client.StreamSnapshots(metadata);
let last = null;
let acked = '';

call.on('data', (snapshot) => {
  last = snapshot;
  emit({
    type: 'snapshot',
    version: snapshot.version_info,
    nonce: snapshot.nonce,
    resources: snapshot.resources.map((r) => ({ kind: r.kind, namespace: r.namespace, name: r.name, version: r.version, yaml: r.yaml })),
  });
});
call.on('error', (err) => { emit({ type: 'error', code: err.code, details: err.details }); process.exit(0); });
call.on('end', () => { emit({ type: 'end' }); process.exit(0); });

call.write({
  node: { workload, namespace, service_account: workload, instance_id: `${workload}-grpcjs.${namespace}`, proxy_version: 'grpc-js', labels },
  version_info: '',
  response_nonce: '',
});

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const [command, ...rest] = line.trim().split(' ');
  if (command === 'ack' && last) {
    acked = last.version_info;
    call.write({ version_info: last.version_info, response_nonce: last.nonce });
  } else if (command === 'nack' && last) {
    call.write({ version_info: acked, response_nonce: last.nonce, error_detail: { code: 3, message: rest.join(' ') } });
  } else if (command === 'end') {
    call.end();
  }
});
