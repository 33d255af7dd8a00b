/**
 * Bare Aedes: the broker the gateway embeds, with nothing of the gateway around it. The baseline
 * of `npm run bench` (bench/run.ts), in its own process on the same Node.
 *
 *   node --import tsx bench/targets/bare-aedes.ts
 *
 * Default options (Aedes.createBroker() with none given: in-memory persistence, mqemitter, no
 * hooks), one TCP listener on 127.0.0.1, port 0 unless BENCH_PORT says otherwise. Prints one JSON
 * line `{"port":N,"pid":N}` once it listens; SIGTERM or SIGINT closes it and exits 0.
 */
import { createServer } from 'node:net'
import { Aedes } from 'aedes'

const aedes = await Aedes.createBroker()
const server = createServer(aedes.handle)
server.listen(Number(process.env.BENCH_PORT ?? 0), '127.0.0.1', () => {
  const address = server.address()
  const port = address !== null && typeof address === 'object' ? address.port : 0
  process.stdout.write(`${JSON.stringify({ port, pid: process.pid })}\n`)
})

const stop = () => {
  server.close()
  aedes.close(() => process.exit(0))
  // Clients that never go away must not keep the benchmark waiting.
  setTimeout(() => process.exit(0), 2_000).unref()
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
