/**
 * One process of the message-pattern floor (floor.ts): relays frames with no crypto and no
 * state beyond a prepare count. Started by `startProcesses` (argv[2] = {"id": i}, 0 being the
 * primary): prints "PORT <p>", reads the peers' ports from stdin, connects to the higher ids and
 * prints "READY" once connected to every peer both ways.
 */
import * as net from 'node:net';
import { createInterface } from 'node:readline';
import { CLIENT, FloorMsg, floorFrame, onFloorFrames } from './floor';

const { id } = JSON.parse(process.argv[2]!) as { id: number };
const peers = new Map<number, net.Socket>();
let expected = Infinity;
let client: net.Socket | undefined;
const prepares = new Map<number, number>();

function multicast(type: FloorMsg, seq: number): void {
  const f = floorFrame(type, seq, id);
  for (const s of peers.values()) s.write(f);
}

function addPeer(peer: number, socket: net.Socket): void {
  peers.set(peer, socket);
  if (peers.size === expected) console.log('READY');
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
        else addPeer(sender, socket);
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
  const ports = Object.entries((JSON.parse(l) as { peers: Record<string, number> }).peers);
  expected = ports.length - 1;
  if (peers.size === expected) console.log('READY');
  for (const [j, port] of ports) {
    if (Number(j) <= id) continue;
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(floorFrame(FloorMsg.Hello, 0, id));
      addPeer(Number(j), s);
    });
    attach(s);
  }
});
