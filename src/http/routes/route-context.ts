import type { ReadingStore } from '../../store/reading-store.ts'

/** What every route needs: the store it reads and the clock relative times are anchored to. */
export interface RouteContext {
  store: ReadingStore
  now: () => number
}
