import * as net from 'node:net';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, isTemporal, startDevServer } from '../../infra/devServer';
import { isolatedHome } from '../helpers/env';

const home = isolatedHome('devserver');
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

describe('embedded Temporal launcher', () => {
  it('starts the pinned dev server with a SQLite file, reuses it, and stops cleanly', async () => {
    const port = await freePort();
    const dbFile = path.join(home, 'temporal.db');
    const server = await startDevServer({ port, headless: true, dbFile });
    cleanups.push(() => server.stop());
    expect(server.owned).toBe(true);
    expect(await isTemporal(server.address)).toBe(true);

    const again = await startDevServer({ port, headless: true, dbFile });
    expect(again.owned).toBe(false); // a running server on the port is reused, not restarted

    await server.stop();
    expect(await isTemporal(server.address, 1000)).toBe(false);
  });

  it('refuses a port taken by something that is not Temporal, saying what to do', async () => {
    const sockets = new Set<net.Socket>();
    const squatter = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {}); // the gRPC probe hangs up on us
      socket.end('HTTP/1.1 200 OK\r\n\r\nhello');
    });
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      for (const s of sockets) s.destroy();
      squatter.close();
    });
    const port = (squatter.address() as net.AddressInfo).port;
    await expect(startDevServer({ port, headless: true, dbFile: path.join(home, 'x.db') })).rejects.toThrow(
      `port ${port} is taken by something that is not a Temporal server`,
    );
  });
});
