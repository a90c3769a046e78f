// A real WebSocket client (ws): connects to <url> with Host <host>, sends three messages, prints the echoes.
const WebSocket = require('ws');
const [url, host] = process.argv.slice(2);
const ws = new WebSocket(url, { headers: { Host: host } });
const echoes = [];
const timer = setTimeout(() => { console.log(JSON.stringify({ error: 'timeout', echoes })); process.exit(1); }, 10000);
ws.on('open', () => ['one', 'two', 'three'].forEach((m) => ws.send(m)));
ws.on('message', (data) => {
  echoes.push(data.toString());
  if (echoes.length === 3) ws.close(1000, 'done');
});
ws.on('close', (code) => { clearTimeout(timer); console.log(JSON.stringify({ echoes, code })); });
ws.on('error', (e) => { clearTimeout(timer); console.log(JSON.stringify({ error: e.message, echoes })); });
ws.on('unexpected-response', (req, res) => { clearTimeout(timer); console.log(JSON.stringify({ error: `HTTP ${res.statusCode}` })); });
