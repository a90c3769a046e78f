// A TLS client that reports the raw TCP bytes it moved inside the TLS session (handshake and records),
// as counted by Node's socket: what a sidecar passing the session through should count too.
//   node tls-bytes-client.js direct <host> <port> <ca-file>
//   node tls-bytes-client.js connect <host> <port> <ca-file> <proxy-host> <proxy-port>
// Sends "GET / HTTP/1.0" and reads until the server closes; prints one JSON line.
const net = require('net');
const tls = require('tls');
const fs = require('fs');
const [mode, host, port, caFile, proxyHost, proxyPort] = process.argv.slice(2);
const ca = fs.readFileSync(caFile);
const fail = (e) => { console.log(JSON.stringify({ error: String(e && e.message || e) })); process.exit(1); };
setTimeout(() => fail('timeout'), 10000);

function session(raw, sentBefore, receivedBefore) {
  const secure = tls.connect({ socket: raw, servername: host, ca });
  let text = '';
  secure.on('secureConnect', () => secure.write('GET / HTTP/1.0\r\n\r\n'));
  secure.on('data', (d) => { text += d.toString('latin1'); });
  secure.on('error', fail);
  raw.on('close', () => {
    console.log(JSON.stringify({
      status: text.split('\r\n')[0],
      sent: raw.bytesWritten - sentBefore,
      received: raw.bytesRead - receivedBefore,
    }));
    process.exit(0);
  });
}

if (mode === 'direct') {
  const raw = net.connect(Number(port), host, () => session(raw, 0, 0));
  raw.on('error', fail);
} else {
  const raw = net.connect(Number(proxyPort), proxyHost, () => raw.write(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`));
  raw.on('error', fail);
  let head = Buffer.alloc(0);
  const onHead = (chunk) => {
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    raw.removeListener('data', onHead);
    if (!head.toString('latin1').startsWith('HTTP/1.1 200')) fail('CONNECT refused: ' + head.toString('latin1').split('\r\n')[0]);
    if (end + 4 !== head.length) fail('bytes after the CONNECT reply before TLS began');
    session(raw, raw.bytesWritten, raw.bytesRead);
  };
  raw.on('data', onHead);
}
