// A real WebSocket client (ws): connects to <url> with Host <host>, sends three messages, prints the echoes
// and the bytes its socket moved after the handshake (frames only: the upgrade request and 101 response
// are behind the counts taken at 'open'), as measured by Node itself.
const WebSocket = require('ws');
const [url, host] = process.argv.slice(2);
const ws = new WebSocket(url, { headers: { Host: host } });
const echoes = [];
let socket, writtenAtOpen, readAtOpen;
const timer = setTimeout(() => { console.log(JSON.stringify({ error: 'timeout', echoes })); process.exit(1); }, 10000);
ws.on('upgrade', (res) => { socket = res.socket; });
ws.on('open', () => {
  writtenAtOpen = socket.bytesWritten;
  readAtOpen = socket.bytesRead;
  ['one', 'two', 'three'].forEach((m) => ws.send(m));
});
ws.on('message', (data) => {
  echoes.push(data.toString());
  if (echoes.length === 3) ws.close(1000, 'done');
});
ws.on('close', (code) => {
  clearTimeout(timer);
  console.log(JSON.stringify({ echoes, code, frameBytesSent: socket.bytesWritten - writtenAtOpen, frameBytesReceived: socket.bytesRead - readAtOpen }));
});
ws.on('error', (e) => { clearTimeout(timer); console.log(JSON.stringify({ error: e.message, echoes })); });
ws.on('unexpected-response', (req, res) => { clearTimeout(timer); console.log(JSON.stringify({ error: `HTTP ${res.statusCode}` })); });
