// Plain TCP peers for the TCP-through-the-mesh tests (no HTTP anywhere):
//   node tcp-peer.js greeter-server <port>   an SMTP-style server that speaks first: "220 ..." on accept, "250 ..." per
//                                            line, "221 bye" and close on QUIT
//   node tcp-peer.js echo-server <port>      echoes every byte; ends its side when the client ends its own (half-close)
//   node tcp-peer.js greeter-client <host> <port>      waits for the banner without sending, then HELO and QUIT
//   node tcp-peer.js echo-client <host> <port> <bytes> sends <bytes> bytes, half-closes, reads the echo to the end
//   node tcp-peer.js greeter-hold <host> <port>        waits for the banner, prints "holding", keeps the stream open
//                                                       until killed
// A client prints one JSON line: what it saw, and the bytes it wrote and read as its socket counted them.
const net = require('net');
const [mode, a, b, c] = process.argv.slice(2);

if (mode === 'greeter-server') {
  net.createServer((socket) => {
    socket.write('220 billing ESMTP ready\r\n');
    let buffered = '';
    socket.on('data', (d) => {
      buffered += d.toString('latin1');
      let end;
      while ((end = buffered.indexOf('\r\n')) >= 0) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        if (line === 'QUIT') { socket.end('221 bye\r\n'); return; }
        socket.write(`250 ok ${line}\r\n`);
      }
    });
    socket.on('error', () => {});
  }).listen(Number(a), () => console.log(`listening ${a}`));
} else if (mode === 'echo-server') {
  net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('data', (d) => socket.write(d));
    socket.on('end', () => socket.end());
    socket.on('error', () => {});
  }).listen(Number(a), () => console.log(`listening ${a}`));
} else if (mode === 'greeter-hold') {
  const socket = net.connect({ host: a, port: Number(b) });
  socket.once('data', (d) => console.log(`holding ${d.toString('latin1').trim()}`));
  socket.on('error', (e) => { console.log(`error ${e.code || e}`); process.exit(1); });
  socket.on('close', () => { console.log('closed'); process.exit(1); });
} else {
  const report = (fields) => { console.log(JSON.stringify(fields)); process.exit(0); };
  const socket = net.connect({ host: a, port: Number(b), allowHalfOpen: true });
  const lines = [];
  let text = '';
  let received = Buffer.alloc(0);
  setTimeout(() => report({ lines, timeout: true, sent: socket.bytesWritten, received: socket.bytesRead }), 10000);
  socket.on('error', (e) => report({ lines, error: e.code || String(e), sent: socket.bytesWritten, received: socket.bytesRead }));
  if (mode === 'greeter-client') {
    // Nothing is written before the banner: a server-speaks-first protocol.
    socket.on('data', (d) => {
      text += d.toString('latin1');
      let end;
      while ((end = text.indexOf('\r\n')) >= 0) {
        const line = text.slice(0, end);
        text = text.slice(end + 2);
        lines.push(line);
        if (lines.length === 1) socket.write('HELO store\r\n');
        if (lines.length === 2) socket.write('QUIT\r\n');
      }
    });
    // The server's end (after 221) reaches us as a half-close; we end our side too, which must reach the server.
    socket.on('end', () => socket.end());
    socket.on('close', () => report({ lines, sent: socket.bytesWritten, received: socket.bytesRead }));
  } else {
    // Lowercase and binary: not HTTP, whatever the port was declared as.
    const payload = Buffer.alloc(Number(c));
    for (let i = 0; i < payload.length; i++) payload[i] = i % 7 === 0 ? 0 : 97 + (i % 26);
    socket.on('connect', () => { socket.write(payload); socket.end(); });
    socket.on('data', (d) => { received = Buffer.concat([received, d]); });
    socket.on('end', () => report({ lines, echoed: received.equals(payload), halfClosed: true, sent: socket.bytesWritten, received: socket.bytesRead }));
    socket.on('close', () => report({ lines, echoed: received.equals(payload), sent: socket.bytesWritten, received: socket.bytesRead }));
  }
}
