import path from 'node:path'
import type { GatewayConfig } from '../config/schema.ts'
import type { Logger } from '../telemetry/logger.ts'
import { createInfluxStore } from './influx-store.ts'
import type { ReadingStore } from './reading-store.ts'
import { createSqliteStore } from './sqlite-store.ts'

/** The configured backend (DESIGN §5): the SQLite file by default, InfluxDB 1.x with STORE=influx. */
export async function openStore(
  config: Pick<GatewayConfig, 'dataDir' | 'store'>,
  log: Logger,
): Promise<ReadingStore> {
  const { store } = config
  if (store.kind === 'influx') {
    return createInfluxStore({
      url: store.influxUrl,
      rawRetentionMs: store.influxRawRetentionMs,
      downsampledRetentionMs: store.influxDownsampledRetentionMs,
      log,
    })
  }
  return createSqliteStore({
    file: path.resolve(config.dataDir, store.sqliteFile),
    retentionMs: store.retentionMs || undefined,
    log,
  })
}
