import { readFile, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import path from 'node:path'
import { Webhook } from 'standardwebhooks'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { addCredentials } from '../../scripts/device-add.ts'
import { createSqliteStore } from '../../src/store/sqlite-store.ts'
import { startTestGateway } from '../helpers/gateway.ts'
import { connectClient } from '../helpers/mqtt.ts'
import { type RunningProcess, runToEnd, startProcess } from '../helpers/processes.ts'
import { allReadings } from '../helpers/store.ts'
import { createTempDir } from '../helpers/temp-dir.ts'

const BASE_ENV = { LOG_PRETTY: 'false', LOG_LEVEL: 'info', MQTT_PORT: '0', HTTP_PORT: '0' }

describe('the gateway as a real process (npm start)', () => {
  let proc: RunningProcess | null = null
  const dirs: Array<{ remove(): Promise<void> }> = []

  afterEach(async () => {
    if (proc && proc.child.exitCode === null && proc.child.signalCode === null) {
      proc.signal('SIGKILL')
      await proc.exited
    }
    proc = null
    for (const dir of dirs.splice(0)) await dir.remove()
  })

  it('starts on OS-chosen ports, stores readings, and on SIGTERM flushes and exits 0', async () => {
    const dir = await createTempDir('gw-proc-')
    dirs.push(dir)
    proc = startProcess('npm', ['start', '--silent'], { ...BASE_ENV, DATA_DIR: dir.path })
    const running = proc
    const mqttPort = await vi.waitFor(
      () => {
        const line = running
          .logLines()
          .find((l) => typeof l.msg === 'string' && l.msg.startsWith('MQTT listening'))
        expect(line, running.stderr()).toBeDefined()
        return line?.port as number
      },
      { timeout: 20_000, interval: 50 },
    )
    await vi.waitFor(() =>
      expect(running.logLines().some((l) => String(l.msg).startsWith('HTTP listening'))).toBe(true),
    )
    expect(mqttPort).toBeGreaterThan(0)

    const device = await connectClient(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'dev-proc' })
    const ts = Date.now() - 1_000
    for (let i = 0; i < 20; i++) {
      // QoS 0 on purpose: nothing waits for these, so only the shutdown flush can store them.
      device.publish('sensors/dev-proc/temperature', JSON.stringify({ value: i, ts: ts + i }), {
        qos: 0,
      })
    }
    await device.publishAsync('sensors/dev-proc/humidity', '55', { qos: 1 })
    const disconnected = new Promise<void>((resolve) => device.once('close', () => resolve()))

    // The device stays connected: shutdown must close it rather than wait for it.
    running.signal('SIGTERM')
    expect(await running.exited).toBe(0)
    await disconnected
    await device.endAsync(true)
    expect(running.logLines().some((l) => l.msg === 'gateway stopped')).toBe(true)

    const store = createSqliteStore({ file: path.join(dir.path, 'gateway.db') })
    try {
      const stored = await allReadings(store, 'dev-proc')
      expect(stored.filter((r) => r.metric === 'temperature').map((r) => r.value)).toEqual([
        ...Array(20).keys(),
      ])
      expect(stored.filter((r) => r.metric === 'humidity').map((r) => r.value)).toEqual([55])
    } finally {
      await store.close()
    }
  })

  it('npm run simulate stops cleanly on one Ctrl-C, which npm echoes to it a second time', async () => {
    const gw = await startTestGateway()
    try {
      proc = startProcess(
        'npm',
        [
          'run',
          'simulate',
          '--silent',
          '--',
          '--url',
          gw.mqttUrl,
          '--devices',
          '2',
          '--interval',
          '100ms',
        ],
        {
          LOG_LEVEL: 'info',
        },
      )
      const running = proc
      await vi.waitFor(
        () =>
          expect(running.logLines().some((l) => String(l.msg).includes('connected'))).toBe(true),
        {
          timeout: 20_000,
          interval: 50,
        },
      )
      // A terminal's Ctrl-C: the whole process group gets SIGINT, npm included.
      running.signal('SIGINT')
      expect(await running.exited).toBe(0)
      expect(running.logLines().some((l) => l.msg === 'simulated devices stopped')).toBe(true)
      expect(
        running
          .logLines()
          .some((l) => l.msg === 'second signal: exiting without a clean disconnect'),
      ).toBe(false)
    } finally {
      await gw.cleanup()
    }
  })

  it('npm run demo provisions its simulator when the registry requires authentication', async () => {
    const dir = await createTempDir('gw-demo-')
    dirs.push(dir)
    const registryFile = path.join(dir.path, 'devices.yaml')
    await writeFile(registryFile, 'devices:\n  - id: sim-001\n    tags: { site: office }\n')
    const { secrets } = await addCredentials({
      kind: 'app',
      ids: ['viewer'],
      file: registryFile,
      tags: null,
      metrics: null,
      roles: ['read-readings'],
      rotate: false,
      secretsOut: null,
      fleet: null,
    })
    const userFile = await readFile(registryFile, 'utf8')
    proc = startProcess('npm', ['run', 'demo', '--silent'], {
      ...BASE_ENV,
      DATA_DIR: path.join(dir.path, 'data'),
      DEVICES_FILE: registryFile,
    })
    const running = proc
    const httpPort = await vi.waitFor(
      () => {
        const line = running.logLines().find((l) => String(l.msg).startsWith('HTTP listening'))
        expect(line, running.stderr()).toBeDefined()
        return line?.port as number
      },
      { timeout: 20_000, interval: 50 },
    )
    await vi.waitFor(() => expect(running.stdout()).toContain('Authentication is on'), {
      timeout: 20_000,
      interval: 50,
    })
    const headers = { authorization: `Bearer viewer.${secrets.get('viewer')}` }
    // Readings from the simulator can only be stored if its devices logged in.
    await vi.waitFor(
      async () => {
        const res = await fetch(`http://127.0.0.1:${httpPort}/api/devices`, { headers })
        const body = (await res.json()) as { devices: Array<{ id: string }> }
        expect(body.devices.map((d) => d.id)).toEqual(
          expect.arrayContaining(['greenhouse-sim-001', 'sim-001']),
        )
      },
      { timeout: 20_000, interval: 200 },
    )
    expect(running.logLines().some((l) => String(l.msg).includes('not authorized'))).toBe(false)
    // Anonymous clients are still refused, and the user's registry file is untouched.
    const anonymous = await fetch(`http://127.0.0.1:${httpPort}/api/devices`)
    expect(anonymous.status).toBe(401)
    expect(await readFile(registryFile, 'utf8')).toBe(userFile)
    running.signal('SIGINT')
    expect(await running.exited).toBe(0)
  })

  it('npm run demo notifies an alert as a signed webhook to the receiver it runs, which prints it', async () => {
    const dir = await createTempDir('gw-demo-')
    dirs.push(dir)
    const dataDir = path.join(dir.path, 'data')
    proc = startProcess('npm', ['run', 'demo', '--silent'], { ...BASE_ENV, DATA_DIR: dataDir })
    const running = proc
    const mqttPort = await vi.waitFor(
      () => {
        const line = running.logLines().find((l) => String(l.msg).startsWith('MQTT listening'))
        expect(line, running.stderr()).toBeDefined()
        return line?.port as number
      },
      { timeout: 20_000, interval: 50 },
    )
    // The banner says where notifications go: the receiver's URL, on an OS-chosen port.
    const receiverUrl = await vi.waitFor(
      () => {
        const url = /signed webhooks to (http:\/\/127\.0\.0\.1:\d+\/\S+),/.exec(running.stdout())
        expect(url, running.stdout()).not.toBeNull()
        return url?.[1] as string
      },
      { timeout: 20_000, interval: 50 },
    )
    const notificationsFile = path.join(dataDir, 'demo-notifications.yaml')
    expect((await stat(notificationsFile)).mode & 0o777).toBe(0o600)
    expect(await readFile(notificationsFile, 'utf8')).toContain(receiverUrl)

    // high-temperature (above 30, major) fires for a device of ours, whatever the simulator does.
    const device = await connectClient(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'demo-probe' })
    await device.publishAsync('sensors/demo-probe/temperature', '45', { qos: 1 })
    await device.endAsync()
    const receivedLine = () =>
      running
        .stdout()
        .split('\n')
        .find((l) => l.includes('webhook received') && l.includes('demo-probe'))
    // The route groups alerts over 2 s: alone, the title names the device; grouped, the line does.
    await vi.waitFor(() => expect(receivedLine(), running.stdout()).toBeDefined(), {
      timeout: 20_000,
      interval: 100,
    })
    expect(receivedLine()).toMatch(
      /^ {2}\d\d:\d\d:\d\d webhook received, signature verified: \[major\] high-temperature.*firing.*\| id [0-9a-f-]{36}$/,
    )

    // The receiver does check: a request signed with another secret is refused and said so.
    const body = JSON.stringify({ id: 'forged', title: 'forged', text: '', alerts: [] })
    const forged = new Webhook(`whsec_${Buffer.alloc(32, 7).toString('base64')}`)
    const res = await fetch(receiverUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'webhook-id': 'forged',
        'webhook-timestamp': String(Math.floor(Date.now() / 1000)),
        'webhook-signature': forged.sign('forged', new Date(), body),
      },
      body,
    })
    expect(res.status).toBe(401)
    await vi.waitFor(() => expect(running.stdout()).toContain('webhook REFUSED (401)'))
    // The secret is in the file only, never printed.
    expect(running.stdout() + running.stderr()).not.toContain('whsec_')

    running.signal('SIGINT')
    expect(await running.exited).toBe(0)
  })

  it('npm run demo keeps a notifications file the user names, and starts no receiver', async () => {
    const dir = await createTempDir('gw-demo-')
    dirs.push(dir)
    const dataDir = path.join(dir.path, 'data')
    const userFile = path.join(dir.path, 'notifications.yaml')
    await writeFile(
      userFile,
      'channels:\n  - name: mine\n    kind: webhook\n    url: http://127.0.0.1:9/hook\nroutes:\n  - name: all\n    channels: [mine]\n',
    )
    proc = startProcess('npm', ['run', 'demo', '--silent'], {
      ...BASE_ENV,
      DATA_DIR: dataDir,
      NOTIFICATIONS_FILE: userFile,
    })
    const running = proc
    await vi.waitFor(
      () => expect(running.stdout(), running.stderr()).toContain('Ctrl-C stops the simulator'),
      { timeout: 20_000, interval: 50 },
    )
    expect(running.stdout()).toContain(`Notifications: as configured in ${userFile}`)
    expect(running.stdout()).not.toContain('signed webhooks to')
    await expect(stat(path.join(dataDir, 'demo-notifications.yaml'))).rejects.toThrow(/ENOENT/)
    running.signal('SIGINT')
    expect(await running.exited).toBe(0)
  })

  it('exits 1 with a message naming the key when the configuration is bad', async () => {
    const result = await runToEnd('npm', ['start', '--silent'], {
      ...BASE_ENV,
      MQTT_PORT: 'eighty',
      LOG_LEVEL: 'loud',
    })
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('GW_ERR_CONFIG')
    expect(result.stderr).toContain(
      'MQTT_PORT (mqtt.port, from environment): must be an integer, got "eighty"',
    )
    expect(result.stderr).toContain('LOG_LEVEL (logLevel, from environment): must be one of')
  })

  it('exits 1 naming the port and the variable when the MQTT port is taken', async () => {
    const blocker = createServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    const port = (blocker.address() as { port: number }).port
    const dir = await createTempDir('gw-proc-')
    dirs.push(dir)
    try {
      const result = await runToEnd('npm', ['start', '--silent'], {
        ...BASE_ENV,
        MQTT_PORT: String(port),
        DATA_DIR: dir.path,
      })
      expect(result.code).toBe(1)
      expect(result.stderr).toContain(
        `GW_ERR_PORT_IN_USE: MQTT port ${port} on 127.0.0.1 is already in use: set MQTT_PORT to a free port (0 lets the OS choose)`,
      )
    } finally {
      blocker.close()
    }
  })
})
