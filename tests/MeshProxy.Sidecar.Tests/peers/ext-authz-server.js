// An external authorization server for the CUSTOM action's tests: envoy.service.auth.v3.Authorization/Check
// on grpc-js, loaded from the same .proto files the sidecar is built from (src/MeshProxy.Api/protos). It
// prints {"port":N} once listening on 127.0.0.1, then one {"type":"check",...} line per Check received (the body as
// sent: body, and raw_body in base64 as rawBody; xfcc: the x-forwarded-client-cert a sidecar in front of it added).
// The answer depends on the request's path, so one server serves every case:
//   /deny...  -> PERMISSION_DENIED with a DeniedHttpResponse (status 401 unless ?status=N, headers, a body)
//   /hang...  -> never answers (the sidecar's timeout decides)
//   anything else -> OK, with headers for the app (set, appended, removed) and one for the client
// A Check without HTTP attributes is a TCP connection's (Envoy's network ext_authz): it prints
// {"type":"check","tcp":true,...} with the peers' principals and addresses, and is denied when the destination port is
// 7000, allowed otherwise.
const path = require('path');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const root = process.env.MESHPROXY_PROTO_ROOT;
const def = loader.loadSync('envoy/service/auth/v3/external_auth.proto', { includeDirs: [root], longs: Number, defaults: true });
const auth = grpc.loadPackageDefinition(def).envoy.service.auth.v3;

const header = (key, value, append) => (append === undefined ? { header: { key, value } } : { header: { key, value }, append: { value: append } });

const server = new grpc.Server();
server.addService(auth.Authorization.service, {
  Check: (call, cb) => {
    const a = call.request.attributes;
    const socketOf = (peer) => (peer.address && peer.address.socketAddress ? peer.address.socketAddress : { address: '', portValue: 0 });
    if (!a.request || !a.request.http) {
      const destinationPort = socketOf(a.destination).portValue;
      console.log(JSON.stringify({
        type: 'check',
        tcp: true,
        sourcePrincipal: a.source.principal,
        sourceAddress: socketOf(a.source).address,
        destinationPrincipal: a.destination.principal,
        destinationAddress: socketOf(a.destination).address,
        destinationPort,
      }));
      cb(null, destinationPort === 7000
        ? { status: { code: grpc.status.PERMISSION_DENIED, message: 'port 7000 is closed' } }
        : { status: { code: grpc.status.OK } });
      return;
    }
    const http = a.request.http;
    console.log(JSON.stringify({
      type: 'check',
      method: http.method,
      path: http.path,
      host: http.host,
      id: http.id,
      headers: http.headers,
      sourcePrincipal: a.source.principal,
      sourceAddress: a.source.address && a.source.address.socketAddress ? a.source.address.socketAddress.address : '',
      destinationPrincipal: a.destination.principal,
      destinationPort: a.destination.address && a.destination.address.socketAddress ? a.destination.address.socketAddress.portValue : 0,
      xfcc: (call.metadata.get('x-forwarded-client-cert')[0] || '').toString(),
      body: http.body,
      rawBody: http.rawBody ? Buffer.from(http.rawBody).toString('base64') : '',
    }));
    if (http.path.startsWith('/hang')) return; // no answer, ever
    if (http.path.startsWith('/deny')) {
      const m = /[?&]status=(\d+)/.exec(http.path);
      cb(null, {
        status: { code: grpc.status.PERMISSION_DENIED, message: 'not on the list' },
        deniedResponse: {
          status: { code: m ? Number(m[1]) : 401 },
          headers: [header('www-authenticate', 'Custom realm="ext-authz"'), header('x-ext-authz-reason', 'not on the list'), header('x-hidden', 'secret')],
          body: `{"error":"denied by ext-authz","path":"${http.path}"}`,
        },
      });
      return;
    }
    cb(null, {
      status: { code: grpc.status.OK },
      okResponse: {
        headers: [header('x-ext-authz-user', 'alice'), header('x-ext-authz-check', 'ok', true), header('x-not-for-app', 'nope')],
        headersToRemove: ['x-remove-me'],
        responseHeadersToAdd: [header('x-ext-authz-seen', 'yes')],
      },
    });
  },
});
server.bindAsync('127.0.0.1:' + (process.argv[2] || '0'), grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) { console.error(err); process.exit(1); }
  console.log(JSON.stringify({ port }));
});
