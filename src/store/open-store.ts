import path from 'node:path'
import type { GatewayConfig } from '../config/schema.ts'
import type { Logger } from '../telemetry/logger.ts'
import { createInfluxStore } from './influx-store.ts'
import type { ReadingStore } from './reading-store.ts'
import { SPOOL_FILE } from './spool.ts'
import { createSqliteStore } from './sqlite-store.ts'

export interface OpenedStore {
  store: ReadingStore
  /**
   * False when InfluxDB could not be reached at open: the gateway starts anyway, its writes go to
   * the spool, and its reads fail (503) until `ready` resolves. Always true for SQLite.
   */
  readyAtOpen: boolean
  /**
   * Resolves true once the store takes writes: at once when it did at open; for an InfluxDB
   * unreachable at open, once it answers and its database, retention policies and continuous
   * query are created. Resolves false when the store is closed first.
   */
  ready: Promise<boolean>
}

/**
 * The configured backend (DESIGN §5): the SQLite file by default, InfluxDB 1.x with STORE=influx.
 * An InfluxDB that does not answer at start-up does not stop the start (README, Guarantees); one
 * that answers and refuses (credentials, a statement it does not allow) does.
 */
export async function openStore(
  config: Pick<GatewayConfig, 'dataDir' | 'store'>,
  log: Logger,
): Promise<OpenedStore> {
  const { store } = config
  if (store.kind === 'influx') {
    const influx = await createInfluxStore({
      url: store.influxUrl,
      rawRetentionMs: store.influxRawRetentionMs,
      downsampledRetentionMs: store.influxDownsampledRetentionMs,
      allowUnreachable: true,
      log,
    })
    const readyAtOpen = influx.schemaReady()
    const ready = influx.whenSchemaReady()
    if (!readyAtOpen) {
      const safeUrl = store.influxUrl.replace(/\/\/[^@/]*@/, '//')
      const spooling = store.spoolMaxBytes > 0
      log.warn(
        { url: safeUrl, spool: spooling ? SPOOL_FILE : null, spoolMaxBytes: store.spoolMaxBytes },
        spooling
          ? 'InfluxDB is unreachable at start-up: the gateway runs on the spool (QoS 1 readings acknowledged once spooled) and is not ready until InfluxDB answers'
          : 'InfluxDB is unreachable at start-up and the spool is off (SPOOL_MAX_BYTES=0): QoS 1 readings are not acknowledged until InfluxDB answers',
      )
      void ready.then((created) => {
        if (created) {
          log.info(
            { url: safeUrl },
            spooling
              ? 'InfluxDB answered: database, retention policies and continuous query created; replaying the spool'
              : 'InfluxDB answered: database, retention policies and continuous query created; writing the readings waiting in memory',
          )
        }
      })
    }
    return { store: influx, readyAtOpen, ready }
  }
  return {
    store: createSqliteStore({
      file: path.resolve(config.dataDir, store.sqliteFile),
      retentionMs: store.retentionMs || undefined,
      log,
    }),
    readyAtOpen: true,
    ready: Promise.resolve(true),
  }
}
