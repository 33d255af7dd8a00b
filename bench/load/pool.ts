/**
 * Load workers (bench/load/worker.ts) as child processes of the orchestrator, forked once per
 * benchmark run and reused by every scenario: each takes one job at a time over IPC.
 */
import { type ChildProcess, fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type {
  IdleGo,
  Job,
  JobResult,
  Reply,
  Request,
  Timing,
  WebhookReceiverResult,
} from './jobs.ts'

type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never

const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url))
const CALL_TIMEOUT_MS = 120_000

type Pending = { resolve: (data: unknown) => void; reject: (err: Error) => void }

export class LoadWorker {
  private nextId = 1
  private readonly pending = new Map<number, Pending>()
  private readonly hello: Promise<void>

  constructor(
    readonly index: number,
    private readonly child: ChildProcess,
  ) {
    this.hello = new Promise((resolve, reject) => {
      child.once('error', reject)
      child.once('exit', (code, signal) =>
        reject(new Error(`load worker ${index} exited (${code ?? signal}) before it started`)),
      )
      child.on('message', (message: Reply) => {
        if (message.op === 'hello') resolve()
        else this.settle(message)
      })
    })
    child.on('exit', (code, signal) => {
      const err = new Error(`load worker ${index} exited (${code ?? signal})`)
      for (const p of this.pending.values()) p.reject(err)
      this.pending.clear()
    })
  }

  get pid(): number {
    return this.child.pid as number
  }

  ready(): Promise<void> {
    return this.hello
  }

  private settle(message: Reply): void {
    if (message.op === 'hello') return
    const p = this.pending.get(message.id)
    if (!p) return
    this.pending.delete(message.id)
    if (message.op === 'error') p.reject(new Error(`load worker ${this.index}: ${message.message}`))
    else p.resolve(message.data)
  }

  private call(request: DistributiveOmit<Request, 'id'>): Promise<unknown> {
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`load worker ${this.index}: ${request.op} timed out`))
      }, CALL_TIMEOUT_MS)
      this.pending.set(id, {
        resolve: (data) => {
          clearTimeout(timer)
          resolve(data)
        },
        reject: (err) => {
          clearTimeout(timer)
          reject(err)
        },
      })
      this.child.send({ ...request, id } as Request)
    })
  }

  prepare(job: Job): Promise<unknown> {
    return this.call({ op: 'prepare', job })
  }

  go(timing: Timing): Promise<unknown> {
    return this.call({ op: 'go', timing })
  }

  goIdle(timing: Timing): Promise<IdleGo> {
    return this.call({ op: 'go', timing }) as Promise<IdleGo>
  }

  /**
   * Ends the job. `expected`: messages a subscriber should get; `drainMs`: how long at most to wait
   * for what is still owed (PUBACKs, deliveries) before reporting it as missing.
   */
  finish<R extends JobResult>(expected?: number, drainMs?: number): Promise<R> {
    return this.call({
      op: 'finish',
      ...(expected === undefined ? {} : { expected }),
      ...(drainMs === undefined ? {} : { drainMs }),
    }) as Promise<R>
  }

  /**
   * Starts this worker's webhook receiver (verifying signatures with `secret`), which probes with
   * `webhook` wait on; it runs beside the worker's jobs until stopWebhookReceiver.
   */
  async startWebhookReceiver(secret: string): Promise<{ url: string }> {
    return (await this.call({ op: 'webhook-start', secret })) as { url: string }
  }

  stopWebhookReceiver(): Promise<WebhookReceiverResult> {
    return this.call({ op: 'webhook-stop' }) as Promise<WebhookReceiverResult>
  }

  stop(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM')
  }
}

export async function startPool(size: number): Promise<LoadWorker[]> {
  const workers = Array.from(
    { length: size },
    (_, i) =>
      new LoadWorker(
        i,
        fork(WORKER, [], {
          execArgv: ['--import', 'tsx'],
          serialization: 'advanced',
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        }),
      ),
  )
  await Promise.all(workers.map((w) => w.ready()))
  return workers
}
