// The application behind Pushpin in the benchmark: it answers every `GET /stream?channel=C`
// with a GRIP stream hold on channel C, so Pushpin keeps the client's connection and sends it
// whatever is published to C. Per subscriber the origin does one short request; after that it
// holds nothing (the connection lives in Pushpin).
'use strict';
const http = require('http');

const port = Number(process.env.PORT);
if (!Number.isInteger(port) || port <= 0) {
  console.error('origin.js: set PORT');
  process.exit(2);
}

http
  .createServer((req, res) => {
    const url = new URL(req.url, 'http://origin');
    const channel = url.searchParams.get('channel');
    if (req.method !== 'GET' || url.pathname !== '/stream' || !channel) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('GET /stream?channel=NAME\n');
      return;
    }
    res.writeHead(200, {
      'Content-Type': 'text/event-stream',
      'Cache-Control': 'no-cache',
      'Grip-Hold': 'stream',
      'Grip-Channel': channel,
      // A keep-alive comment after 30 s of silence, as a production SSE setup would ask for.
      'Grip-Keep-Alive': ':\\n\\n; format=cstring; timeout=30',
    });
    // The first bytes: the stream is open (every peer sends some at once).
    res.end(':\n\n');
  })
  .listen(port, '127.0.0.1');
