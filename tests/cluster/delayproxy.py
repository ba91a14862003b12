"""A TCP proxy that adds a fixed delay to every byte, each way.

    delayproxy.py --listen ADDR --upstream ADDR --ports P[,P...]
                  --delay-ms 50 --ready-file FILE

Listens on ADDR:P for each P and forwards to UPSTREAM:P (same port), so a
worker whose --master points at the proxy finds the work and result ports
(P+1, P+2) there too. Data read at time t is written on at t + delay, in
order, without limiting throughput. Once every listener is bound, writes
the ports to FILE (via FILE.tmp and a rename). The cluster harness runs it
inside a worker's namespace, because this kernel has no netem qdisc.
"""
import argparse
import asyncio
import json
import os


async def pump(reader, writer, delay, loop):
    q = asyncio.Queue()

    async def feed():
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                q.put_nowait((loop.time() + delay, data))
        except (ConnectionError, OSError):
            pass
        q.put_nowait((loop.time() + delay, None))

    async def drain():
        try:
            while True:
                due, data = await q.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    break
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass

    await asyncio.gather(feed(), drain())


async def serve(args, loop):
    delay = args.delay_ms / 1000.0
    servers = []

    def handler_for(port):
        async def handle(cr, cw):
            try:
                ur, uw = await asyncio.open_connection(args.upstream, port)
            except OSError:
                cw.close()
                return
            try:
                await asyncio.gather(pump(cr, uw, delay, loop),
                                     pump(ur, cw, delay, loop))
            finally:
                for w in (uw, cw):
                    w.close()
        return handle

    for p in args.ports:
        servers.append(await asyncio.start_server(handler_for(p), args.listen,
                                                  p, reuse_address=True))
    tmp = args.ready_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"ports": args.ports, "pid": os.getpid()}, f)
    os.rename(tmp, args.ready_file)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--ports", required=True,
                    type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--delay-ms", type=float, default=50)
    ap.add_argument("--ready-file", required=True)
    args = ap.parse_args()
    loop = asyncio.new_event_loop()
    loop.run_until_complete(serve(args, loop))


if __name__ == "__main__":
    main()
