// server.js: the socket.io peer of the fan-out benchmark. socket.io 4 (npm,
// package.json here; make bench installs it into build/bench/socketio) on
// one Node process, websocket transport only, as a socket.io deployment
// that skips long-polling runs it. POST /broadcast is the trigger: it
// io.emit()s one event, shaped and sized like discoveryd's, to every
// connected client and answers {"seq":N,"delivered":M}. The load generator
// speaks Engine.IO v4 itself (tests/bench/loadgen/dialect.c).
//
//   NODE_PATH=build/bench/socketio/node_modules node server.js [HOST]
//
// Once it listens it prints "ready agents=HOST:PORT http=HOST:PORT" (one
// port serves both).
'use strict';

const http = require('http');
const { Server } = require('socket.io');

const host = process.argv[2] || '127.0.0.1';
let seq = 0;

const httpServer = http.createServer((req, res) => {
	if (req.method !== 'POST' || req.url !== '/broadcast') {
		res.writeHead(404, { Connection: 'close' });
		res.end();
		return;
	}
	req.resume();
	req.on('end', () => {
		seq++;
		io.emit('event', {
			type: 'event', epoch: '0f1e2d3c4b5a69788796a5b4c3d2e1f0', seq,
			kind: 'command', command: 'Reload', header: { source: 'bench' },
			value: { why: 'bench' },
		});
		const body = JSON.stringify({ seq, delivered: io.engine.clientsCount });
		res.writeHead(200, { 'Content-Type': 'application/json',
				     Connection: 'close' });
		res.end(body);
	});
});

const io = new Server(httpServer, {
	transports: ['websocket'],
	serveClient: false,
	perMessageDeflate: false,
});

process.on('SIGTERM', () => process.exit(0));

httpServer.listen(0, host, 4096, () => {
	const a = httpServer.address();
	const at = `${a.address}:${a.port}`;

	console.log(`ready agents=${at} http=${at}`);
});
