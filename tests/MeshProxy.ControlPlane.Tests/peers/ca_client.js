// One CreateCertificate call from a real grpc-js client, against the real ca.proto.
// usage: node ca_client.js <host:port> <csr.pem> <token or -> <validitySeconds> [<root.pem> for TLS]
// Prints one JSON line: {ok:true, chain:[...], bundle:[...]} or {ok:false, code, details}.
'use strict';
const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const root = process.env.MESHPROXY_PROTO_ROOT;
const definition = protoLoader.loadSync(path.join(root, 'meshproxy', 'v1', 'ca.proto'), {
  keepCase: true,
  longs: String,
  defaults: true,
  includeDirs: [root],
});
const Certificates = grpc.loadPackageDefinition(definition).meshproxy.v1.Certificates;

const [address, csrFile, token, validity, rootFile] = process.argv.slice(2);
const credentials = rootFile
  // The server's name is its SPIFFE ID (a URI SAN), not a DNS name: check the chain, skip the host name.
  ? grpc.credentials.createSsl(fs.readFileSync(rootFile), null, null, { checkServerIdentity: () => undefined })
  : grpc.credentials.createInsecure();
const client = new Certificates(address, credentials);
const metadata = new grpc.Metadata();
if (token !== '-') {
  metadata.add('authorization', token.includes(' ') ? token : 'Bearer ' + token);
}

const deadline = new Date(Date.now() + 10000);
client.CreateCertificate({ csr_pem: fs.readFileSync(csrFile, 'utf8'), validity_seconds: validity }, metadata, { deadline }, (err, response) => {
  if (err) {
    process.stdout.write(JSON.stringify({ ok: false, code: err.code, details: err.details }) + '\n');
  } else {
    process.stdout.write(JSON.stringify({ ok: true, chain: response.cert_chain_pem, bundle: response.trust_bundle_pem }) + '\n');
  }
  client.close();
});
