/**
 * One process of the message-pattern floor (floor.ts): relays frames with no crypto and no
 * state beyond a prepare count. argv[2] = its id (0 is the primary). Prints "PORT <p>", reads
 * the JSON array of all ports from stdin, then connects to the processes with higher ids.
 */
import * as net from 'node:net';
import { createInterface } from 'node:readline';
import { CLIENT, FloorMsg, floorFrame, onFloorFrames } from './floor';

const id = Number(process.argv[2]);
const peers = new Map<number, net.Socket>();
let client: net.Socket | undefined;
const prepares = new Map<number, number>();

function multicast(type: FloorMsg, seq: number): void {
  const f = floorFrame(type, seq, id);
  for (const s of peers.values()) s.write(f);
}

/** A prepare-equivalent for `seq`: reply once 2f = 2 of them arrived. */
function prepared(seq: number): void {
  const k = (prepares.get(seq) ?? 0) + 1;
  prepares.set(seq, k);
  if (k === 2) {
    prepares.delete(seq);
    client?.write(floorFrame(FloorMsg.Reply, seq, id));
  }
}

function attach(socket: net.Socket): void {
  socket.setNoDelay(true);
  onFloorFrames(socket, (type, seq, sender) => {
    switch (type) {
      case FloorMsg.Hello:
        if (sender === CLIENT) client = socket;
        else peers.set(sender, socket);
        return;
      case FloorMsg.Echo:
        return void socket.write(floorFrame(FloorMsg.Reply, seq, id));
      case FloorMsg.Request:
        return multicast(FloorMsg.PrePrepare, seq);
      case FloorMsg.PrePrepare:
        multicast(FloorMsg.Prepare, seq);
        return prepared(seq);
      case FloorMsg.Prepare:
        return prepared(seq);
    }
  });
}

const server = net.createServer(attach);
server.listen(0, '127.0.0.1', () => {
  console.log(`PORT ${(server.address() as net.AddressInfo).port}`);
});
createInterface({ input: process.stdin }).once('line', (l) => {
  const ports = JSON.parse(l) as number[];
  ports.forEach((port, j) => {
    if (j <= id) return;
    const s = net.connect(port, '127.0.0.1', () => s.write(floorFrame(FloorMsg.Hello, 0, id)));
    peers.set(j, s);
    attach(s);
  });
});
