// A control plane as grpc-js implements it, for the sidecar's client under test.
// Usage: node control_plane_server.js <snapshots.json>
//   snapshots.json: [{version_info, resources:[{kind,namespace,name,version,yaml}]}, ...], pushed in order:
//   the first on connect, each next one after the previous was answered (ACK or NACK).
// stdout: {"type":"listening",port} then one {"type":"request",node,version_info,response_nonce,error} per request received.
'use strict';
const fs = require('fs');
const { grpc, ConfigDiscovery, emit } = require('./discovery_common');

const snapshots = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const server = new grpc.Server();
server.addService(ConfigDiscovery.service, {
  StreamSnapshots(call) {
    let next = 0;
    const push = () => {
      if (next < snapshots.length) {
        const s = snapshots[next++];
        call.write({ version_info: s.version_info, nonce: `n${next}`, resources: s.resources });
      }
    };
    call.on('data', (req) => {
      emit({
        type: 'request',
        node: req.node ? { workload: req.node.workload, namespace: req.node.namespace, instance_id: req.node.instance_id } : null,
        version_info: req.version_info,
        response_nonce: req.response_nonce,
        error: req.error_detail ? req.error_detail.message : null,
      });
      if (req.response_nonce === '' || req.response_nonce === `n${next}`) push();
    });
    call.on('end', () => call.end());
    call.on('error', () => {});
  },
});
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) { emit({ type: 'error', details: err.message }); process.exit(1); }
  emit({ type: 'listening', port });
});
