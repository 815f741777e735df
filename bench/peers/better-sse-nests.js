// The nests app of the tutorial (shared/seeds/002) written the way better-sse is meant to be
// used: one channel that every session joins, `channel.broadcast` per new nest, the current
// list pushed on connect. Our own code; it mirrors the tutorial's endpoints so the generator
// drives it exactly like the Express peer (GET /events, POST /nest JSON, GET /status).
'use strict';

const express = require('express');
const bodyParser = require('body-parser');
const cors = require('cors');
const { createSession, createChannel } = require('better-sse');

const app = express();
const nests = [];
const channel = createChannel();

app.use(cors());
app.use(bodyParser.json());

app.get('/events', async (req, res) => {
  const session = await createSession(req, res);
  // Like the tutorial: the whole list first, then each new nest.
  session.push(nests);
  channel.register(session);
});

app.post('/nest', (req, res) => {
  const nest = req.body;
  nests.push(nest);
  res.json(nest);
  channel.broadcast(nest);
});

app.get('/status', (req, res) => res.json({ clients: channel.sessionCount }));

const PORT = process.env.PORT || 3000;
app.listen(PORT, '127.0.0.1', () => console.log(`better-sse nests listening on port ${PORT}`));
